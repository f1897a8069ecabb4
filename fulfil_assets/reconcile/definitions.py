import dagster as dg

from fulfil_assets.reconcile.analyst_copy import analyst_copy, analyst_copy_job, analyst_copy_sensor
from fulfil_assets.reconcile.checks import every_ready_order_reached_the_wms, orders_stuck_at_warehouse

defs = dg.Definitions(
    assets=[analyst_copy],
    asset_checks=[every_ready_order_reached_the_wms, orders_stuck_at_warehouse],
    jobs=[analyst_copy_job],
    sensors=[analyst_copy_sensor],
)
