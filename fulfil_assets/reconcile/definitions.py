"""The reconcile stage: the tables and checks that show gaps between systems, and the copy analysts query."""

import dagster as dg

from fulfil_assets.config import FulfilConfig
from fulfil_assets.reconcile.analyst_copy import analyst_copy, analyst_copy_job, analyst_copy_sensor
from fulfil_assets.reconcile.assets import build_defs as reconciled_defs
from fulfil_assets.reconcile.checks import every_ready_order_reached_the_wms, orders_stuck_at_warehouse


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """Reconciled tables, the checks on what reached each system, and the analysts' copy."""
    return dg.Definitions.merge(
        reconciled_defs(config),
        dg.Definitions(
            assets=[analyst_copy],
            asset_checks=[every_ready_order_reached_the_wms, orders_stuck_at_warehouse],
            jobs=[analyst_copy_job],
            sensors=[analyst_copy_sensor],
        ),
    )
