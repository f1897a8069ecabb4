import dagster as dg

from fulfil_assets.stage.assets import staged_orders

defs = dg.Definitions(assets=[staged_orders])
