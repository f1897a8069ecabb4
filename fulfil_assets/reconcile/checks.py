"""Asset checks that turn red when orders or tracking get stuck between systems, or go missing."""

import dagster as dg

from resources.warehouse import SCHEMA, Warehouse

STUCK_AT_WMS_HOURS = 48
UNACKNOWLEDGED_HOURS = 2


@dg.asset_check(asset="wms_submissions", blocking=False)
def every_ready_order_reached_the_wms(warehouse: Warehouse) -> dg.AssetCheckResult:
    """No silent loss, counted by what each target itself confirmed: every open order that validated as ready
    has a ledger row that is not held back, and its target took it within two hours of the intent (Whistl by its
    acknowledgement file; Peoplevox and Linnworks answer the call itself). Shadow flows are left out (they send
    nothing by design)."""
    missing = warehouse.get_db().read(
        f"""SELECT v.order_key, COALESCE(s.status, 'no ledger row') AS problem
            FROM {SCHEMA}.validated_orders v JOIN {SCHEMA}.orders o USING (order_key)
            LEFT JOIN {SCHEMA}.wms_submissions s USING (order_key)
            WHERE v.ready AND o.status = 'open' AND (s.status IS NULL OR s.status = 'held'
              OR ((s.status IN ('pending', 'sending') OR (s.status = 'sent' AND s.wms = 'whistl'))
                  AND s.created_at < CURRENT_TIMESTAMP - INTERVAL '{UNACKNOWLEDGED_HOURS} hours'))"""
    )
    counts = dict(missing.group_by("problem").len().iter_rows()) if missing.height else {}
    return dg.AssetCheckResult(
        passed=missing.is_empty(),
        description="Every ready order reached the warehouse and was acknowledged."
        if missing.is_empty()
        else f"{missing.height} ready orders not at the warehouse or not acknowledged: "
        + ", ".join(f"{n} {problem}" for problem, n in counts.items()),
        metadata={
            "missing": missing.height,
            **{f"missing_{k.replace(' ', '_')}": int(v) for k, v in counts.items()},
            "examples": dg.MetadataValue.json(missing["order_key"].head(10).to_list()),
        },
    )


@dg.asset_check(asset="wms_submissions", blocking=False)
def orders_stuck_at_warehouse(warehouse: Warehouse) -> dg.AssetCheckResult:
    """Orders Whistl acknowledged more than 48 hours ago with no despatch and no rejection."""
    stuck = warehouse.get_db().read(
        f"""SELECT order_key, order_ref, updated_at FROM {SCHEMA}.wms_submissions
            WHERE status IN ('sent', 'acknowledged')
              AND updated_at < CURRENT_TIMESTAMP - INTERVAL '{STUCK_AT_WMS_HOURS} hours'"""
    )
    return dg.AssetCheckResult(
        passed=stuck.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{stuck.height} orders at the warehouse not despatched after {STUCK_AT_WMS_HOURS} h"
        + (": the warehouse owner asks the 3PL." if stuck.height else "."),
        metadata={"stuck": stuck.height, "examples": dg.MetadataValue.json(stuck["order_ref"].head(10).to_list())},
    )
