import dagster as dg

from fulfil_assets.validate.assets import validation

defs = dg.Definitions(assets=[validation])
