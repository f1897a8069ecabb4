import dagster as dg

from fulfil_assets.ingest.assets import linnworks_raw, wms_stock

defs = dg.Definitions(assets=[linnworks_raw, wms_stock])
