"""Asset checks that turn red when orders or tracking get stuck between systems, or go missing."""

import dagster as dg

from resources.warehouse import SCHEMA, Warehouse

STUCK_AT_WMS_HOURS = 48
TRACKING_MAX_ATTEMPTS = 5


@dg.asset_check(asset="wms_submissions", blocking=False)
def every_ready_order_reached_the_ledger(warehouse: Warehouse) -> dg.AssetCheckResult:
    """No silent loss: every order that validated as ready has a `wms_submissions` row."""
    missing = warehouse.get_db().read(
        f"""SELECT v.order_key FROM {SCHEMA}.validated_orders v JOIN {SCHEMA}.orders o USING (order_key)
            LEFT JOIN {SCHEMA}.wms_submissions s USING (order_key)
            WHERE v.ready AND o.status = 'open' AND s.order_key IS NULL"""
    )
    return dg.AssetCheckResult(
        passed=missing.is_empty(),
        metadata={
            "missing": missing.height,
            "examples": dg.MetadataValue.json(missing["order_key"].head(10).to_list()),
        },
    )


@dg.asset_check(asset="wms_submissions", blocking=False)
def orders_stuck_at_warehouse(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Orders sent to Whistl more than 48 hours ago with no despatch and no rejection."""
    stuck = warehouse.get_db().read(
        f"""SELECT order_key, order_ref, updated_at FROM {SCHEMA}.wms_submissions
            WHERE status = 'sent' AND updated_at < CURRENT_TIMESTAMP - INTERVAL '{STUCK_AT_WMS_HOURS} hours'"""
    )
    return dg.AssetCheckResult(
        passed=stuck.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"stuck": stuck.height, "examples": dg.MetadataValue.json(stuck["order_ref"].head(10).to_list())},
    )


@dg.asset_check(asset="tracking_posts", blocking=False)
def tracking_not_stuck(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Tracking refused by the OMS, or still pending after five attempts."""
    bad = warehouse.get_db().read(
        f"""SELECT idempotency_key, status, attempts, last_error FROM {SCHEMA}.tracking_posts
            WHERE status = 'failed' OR (status = 'pending' AND attempts >= {TRACKING_MAX_ATTEMPTS})"""
    )
    return dg.AssetCheckResult(
        passed=bad.is_empty(),
        metadata={"stuck": bad.height, "examples": dg.MetadataValue.json(bad.head(10).to_dicts())},
    )
