"""Asset checks on the tracking each order system is due: none refused or stuck, none waiting too long."""

import dagster as dg

from fulfil_assets.effects import FAILED, PENDING, SENDING
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

TRACKING_MAX_ATTEMPTS = 5


def unsettled_tracking(db: WarehouseDb, oms: str, wait_minutes: int) -> dict[str, list[str]]:
    """Posts to `oms` refused by it, still unconfirmed after five attempts, or not confirmed `wait_minutes`
    after the despatch they report (shadow posts are left out: they send nothing by design)."""
    refused = db.read(
        f"SELECT idempotency_key FROM {SCHEMA}.tracking_posts WHERE oms = :oms AND (status = '{FAILED}' "
        f"OR (status IN ('{PENDING}', '{SENDING}') AND attempts >= {TRACKING_MAX_ATTEMPTS}))",
        {"oms": oms},
    )
    minutes = int(wait_minutes)
    late = db.read(
        f"""SELECT t.idempotency_key FROM {SCHEMA}.tracking_posts t
            LEFT JOIN (SELECT order_key, despatch_ref, MIN(despatched_at) AS despatched_at FROM {SCHEMA}.despatches
                       GROUP BY order_key, despatch_ref) d
              ON d.order_key = t.order_key AND d.despatch_ref = t.despatch_ref
            WHERE t.oms = :oms AND t.status IN ('{PENDING}', '{SENDING}')
              AND COALESCE(d.despatched_at, t.created_at) < CURRENT_TIMESTAMP - INTERVAL '{minutes} minutes'""",
        {"oms": oms},
    )
    return {"refused_or_stuck": refused["idempotency_key"].to_list(), "late": late["idempotency_key"].to_list()}


def tracking_posts_recorded(db: WarehouseDb, oms: str) -> int:
    """How many tracking posts to `oms` the ledger holds (shadow ones included: the pipeline made them)."""
    return int(db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.tracking_posts WHERE oms = :oms", {"oms": oms})["n"][0])


def tracking_checks(oms: str, wait_minutes: int) -> list[dg.AssetChecksDefinition]:
    """`tracking_posts/<oms>` checks: refused or stuck posts, and despatches waiting too long for their post."""
    key = dg.AssetKey(["tracking_posts", oms])

    @dg.asset_check(
        asset=key,
        name="tracking_reached_the_order_system",
        blocking=False,
        description=f"Every despatch's tracking reached {oms.capitalize()} within {wait_minutes} minutes "
        f"(schedules.tracking_wait_minutes), none refused, none unconfirmed after {TRACKING_MAX_ATTEMPTS} attempts. "
        "Red: customers are asking where their order is; the data team reads last_error in tracking_posts "
        f"(a refusal needs the office; a wait, the {oms} connection). Amber (no data) while no post to {oms} "
        "has been recorded at all: nothing measured is never green.",
    )
    def tracking_reached_the_order_system(warehouse: Warehouse) -> dg.AssetCheckResult:
        db = warehouse.get_db()
        found = unsettled_tracking(db, oms, wait_minutes)
        recorded = tracking_posts_recorded(db, oms)
        if not recorded:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"No data: no tracking post to {oms} recorded yet, so nothing was measured (no despatch "
                "of its orders taken in yet: see no_despatch_backlog if the warehouse has despatched).",
                metadata={"no_data": True, "posts_recorded": 0, "wait_minutes": wait_minutes},
            )
        examples = (found["refused_or_stuck"] + found["late"])[:10]
        description = (
            f"All {recorded} tracking posts recorded reached their order system in time."
            if not examples
            else f"{len(found['refused_or_stuck'])} tracking posts refused or stuck and {len(found['late'])} late "
            f"(over {wait_minutes} min): the office checks `tracking_posts` for the order system's own words."
        )
        return dg.AssetCheckResult(
            passed=not examples,
            description=description,
            metadata={
                "no_data": False,
                "posts_recorded": recorded,
                "refused_or_stuck": len(found["refused_or_stuck"]),
                "late": len(found["late"]),
                "wait_minutes": wait_minutes,
                "examples": dg.MetadataValue.json(examples),
            },
        )

    return [tracking_reached_the_order_system]
