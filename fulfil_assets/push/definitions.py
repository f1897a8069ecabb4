import dagster as dg

from fulfil_assets.push.assets import wms_submissions

defs = dg.Definitions(assets=[wms_submissions])
