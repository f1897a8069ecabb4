import dagster as dg

from fulfil_assets.reconcile.checks import every_ready_order_reached_the_wms, orders_stuck_at_warehouse

defs = dg.Definitions(asset_checks=[every_ready_order_reached_the_wms, orders_stuck_at_warehouse])
