"""The despatch assets: `despatches` takes Whistl's answer files in (`intake.py`), and `tracking_posts/<oms>` posts
the tracking each order system is due through the effect module (`oms_tracking.py` says how for each system)."""

import time
from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets import effects
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, is_shadow, whistl_in_shadow
from fulfil_assets.despatch.intake import feedback_files, take_feedback_file
from fulfil_assets.despatch.oms_tracking import TRACKING_SENDERS
from fulfil_assets.despatch.planning import storefront_lines
from fulfil_assets.despatch.tracking import fulfilment_intents, whole_order_due
from fulfil_assets.frames import ensure_columns
from resources.file_drop import FileDrop
from resources.http import AuthError
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb


class WhistlFilesConfig(dg.Config):
    """Which files in Whistl's `out/` folder to take in; empty means every one waiting there."""

    file_names: list[str] = []


# Tracking before the order is closed (`ProcessOrder`, an authorised shipment); and no new post to an order while
# one of its posts is unsettled: Linnworks shows only an order's latest tracking number, so a later despatch's post
# must not hide whether an earlier, unconfirmed one landed. Unsettled posts themselves are always taken (to be looked
# up at the order), also when a crash left several of one order unsettled.
TRACKING_FIRST = (
    "kind <> 'process' OR order_key NOT IN "
    f"(SELECT order_key FROM {SCHEMA}.tracking_posts WHERE kind = 'tracking' AND status <> '{effects.SENT}')"
)
ONE_UNSETTLED_PER_ORDER = (
    f"(status = '{effects.SENDING}' OR NOT EXISTS (SELECT 1 FROM {SCHEMA}.tracking_posts other "
    f"WHERE other.order_key = tracking_posts.order_key AND other.status = '{effects.SENDING}' "
    "AND other.idempotency_key <> tracking_posts.idempotency_key))"
)
FILES_CHECK = "every_file_taken_in"
# Runs that take in despatches and post their tracking, each order system's posts time-boxed.
DESPATCH_JOBS = ("despatch_job", "peoplevox_despatch_job")
# Which calls each order system's posts make, for the asset's description.
TRACKING_CALLS = {
    "linnworks": "`Orders/SetOrderShippingInfo` per despatch, `Orders/ProcessOrder` once every line has shipped",
    "cin7": "`sale/fulfilment/ship` lines per parcel, the shipment AUTHORISED by the despatch that completes it",
    "bigcommerce": "`POST /v2/orders/{id}/shipments`, one per parcel and ship-to address with its items",
    "shopify": "`POST fulfillments.json` per parcel of the line items in it, or of all still open once Linnworks "
    "processed the order",
}


def tracking_systems(config: FulfilConfig) -> list[str]:
    """The order systems that receive tracking in the configured flows (Shopify through `shopify_linnworks`)."""
    return sorted({FLOW_SYSTEMS[flow][0] for flow in config.flows} & set(TRACKING_SENDERS))


def plan_fulfilments(db: WarehouseDb, flows: dict[str, bool]) -> int:
    """Intend a Shopify fulfilment for each storefront order fulfil created in Linnworks that Linnworks has
    since processed (read from the ingested processed orders, tracking number included), unless the order sync
    last read it from Shopify fulfilled in full: its parcels' posts left nothing open, and the post would only
    spend a call of Shopify's bucket finding that out."""
    if not db.table_exists("processed_orders", "raw_linnworks"):
        return 0
    processed = ensure_columns(
        db.read("SELECT * FROM raw_linnworks.processed_orders"),
        {
            c: pl.String
            for c in (
                "pk_order_id",
                "d_processed_on",
                "d_cancelled_on",
                "postal_tracking_number",
                "vendor",
                "postal_service_name",
                "external_reference",
            )
        },
    ).with_columns(pl.col("external_reference").cast(pl.String))
    links = db.read(
        f"SELECT s.order_key, o.source_order_id, s.flow FROM {SCHEMA}.wms_submissions s "
        f"JOIN {SCHEMA}.orders o USING (order_key) WHERE s.wms = 'linnworks' AND s.flow = 'shopify_linnworks' "
        f"AND s.status IN ('{effects.SENT}', '{effects.ACKNOWLEDGED}', '{effects.DESPATCHED}') "
        "AND o.status IS DISTINCT FROM 'despatched'",
        schema={"order_key": pl.String, "source_order_id": pl.String, "flow": pl.String},
    )
    # Also for orders whose parcels were posted one by one: what they left open (a line the parcels could not
    # name, such as a bundle the warehouse shipped as its components) is fulfilled here, once they are sent.
    keys = {"keys": links["order_key"].to_list()}
    parcels = db.read(
        f"SELECT order_key, status, payload, result FROM {SCHEMA}.tracking_posts "
        f"WHERE oms = 'shopify' AND kind = 'parcel' AND {db.any_of('order_key', 'keys')}",
        keys,
        schema={"order_key": pl.String, "status": pl.String, "payload": pl.String, "result": pl.String},
    )
    lines = storefront_lines(db, keys["keys"]).rename({"storefront_key": "order_key"})
    intents = fulfilment_intents(processed, whole_order_due(links, parcels, lines))
    effects.intend(db, "tracking_posts", intents, shadow=flows.get("shopify_linnworks", False))
    return intents.height


def tracking_asset(oms: str, flows: dict[str, bool], box_s: float) -> dg.AssetsDefinition:
    """`tracking_posts/<oms>`: the due posts of one order system, sent through the effect module, after whatever
    plans them in the same run (Whistl's files, Peoplevox's despatch lines, Linnworks' processed orders). In a
    despatch run it posts for at most `box_s` seconds; `<oms>_tracking_job` posts whatever is left."""
    through = "linnworks" if oms == "shopify" else oms  # Shopify's orders reach the warehouses through Linnworks
    deps = [dg.AssetKey("despatches")]
    if f"{through}_peoplevox" in flows:
        deps.append(dg.AssetKey("peoplevox_despatch_lines"))
    if oms == "shopify":
        deps.append(dg.AssetKey(["raw_linnworks", "processed_orders"]))

    @dg.asset(
        key=["tracking_posts", oms],
        group_name="despatch",
        deps=deps,
        kinds={oms},
        required_resource_keys={"warehouse", oms},  # named by the order system: typed parameters need fixed names
        description=f"Tracking back to {oms.capitalize()}: {TRACKING_CALLS[oms]}. Through the `tracking_posts` "
        "ledger and the effect module: each post claimed by one sender, an unconfirmed one looked up on the order "
        "before it is sent again, refusals recorded and not retried blindly. No pool: posts draw on the order "
        "system's rate budget shared by every process, so they go between an order sync's reads instead of "
        "waiting for it to end; the warehouse is let go while the order system answers. In a despatch run it "
        f"posts for at most {box_s:g} s (`tracking_in_despatch_seconds`) and leaves the rest to the next run.",
    )
    def tracking_posts(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        resource = getattr(context.resources, oms)
        client = resource.get_client()
        with context.resources.warehouse.session() as db:
            planned = plan_fulfilments(db, flows) if oms == "shopify" else 0
            target = TRACKING_SENDERS[oms](client)
            target.until = time.monotonic() + box_s if context.run.job_name in DESPATCH_JOBS else None
            try:
                report = effects.deliver(
                    db,
                    "tracking_posts",
                    target,
                    where=f"oms = '{oms}' AND ({TRACKING_FIRST}) AND {ONE_UNSETTLED_PER_ORDER}",
                    settle_s=2 * client.timeout_s,  # a call the client gave up on has had time to land
                    batches=target.batches,
                    log=context.log.warning,
                    until=target.until,
                )
            except AuthError as exc:
                raise dg.Failure(description=str(exc)) from None
            finally:
                client.close()
            return dg.MaterializeResult(
                metadata={
                    "summary": dg.MetadataValue.md(report.summary(f"tracking posts to {oms}")),
                    **report.as_metadata(),
                    **({"fulfilments_planned": planned} if oms == "shopify" else {}),
                    f"{oms}_calls": dg.MetadataValue.json(client.stats.as_metadata()),
                }
            )

    return tracking_posts


def build_assets(config: FulfilConfig) -> list[dg.AssetsDefinition]:
    """The despatch assets for the flows fulfil.yaml configures: Whistl's files in, and tracking out to each
    order system of a configured flow."""
    all_flows = {flow: is_shadow(config, flow) for flow in config.flows}
    shadow = whistl_in_shadow(config)

    @dg.asset(
        group_name="despatch",
        kinds={"whistl", "sftp"},
        deps=[dg.AssetKey("wms_submissions")],
        check_specs=[
            dg.AssetCheckSpec(
                FILES_CHECK,
                asset="despatches",
                description="Every Whistl file the run was asked to take in was taken in (processed or quarantined "
                "with its reason). Red names the files whose intake failed: they stay in `out/`, the error is in the "
                "run's log, and the sensor asks for them again.",
            )
        ],
    )
    def despatches(
        context: dg.AssetExecutionContext, config: WhistlFilesConfig, warehouse: Warehouse, whistl_drop: FileDrop
    ) -> dg.MaterializeResult:
        """Acknowledgements, despatch confirmations and rejections from Whistl, each file taken in exactly once
        (a table of processed files by name and content hash is the record). Good rows land in `despatches`;
        bad rows are quarantined with a reason; rows for orders fulfil never sent, shipping more than ordered,
        or shipping none of a line, become exceptions; a file that cannot be read at all moves to
        `out/quarantine/`. Tracking posts are planned for the order's own system. A file whose intake fails
        (the warehouse gone mid-file, a fault in fulfil) stays in `out/` with the error in the log, and the other
        files go on: `every_file_taken_in` turns red naming it, and the sensor asks for it again. While every
        Whistl flow is in shadow, files are read and recorded but left in `out/`."""
        with warehouse.session() as db:
            outcomes: dict[str, dict[str, Any]] = {}
            with whistl_drop.session() as drop:
                waiting = {f.name for f in feedback_files(drop)}
                names = [n for n in config.file_names if n in waiting] if config.file_names else sorted(waiting)
                for name in names:
                    try:
                        outcomes[name] = take_feedback_file(db, drop, name, context.log, all_flows, shadow)
                    except Exception as exc:  # a fault in one file never holds the others' tracking
                        context.log.exception(f"{name}: not taken in; left in out/ to be asked for again")
                        outcomes[name] = {"outcome": "failed", "kept_as": "out/", "reason": type(exc).__name__}
            quarantined = [n for n, o in outcomes.items() if o["outcome"] == "quarantined"]
            if quarantined:
                context.log.warning(f"quarantined files: {quarantined}")
            failed = [n for n, o in outcomes.items() if o["outcome"] == "failed"]
            table = (
                "| file | outcome | kept as | rows read | rows kept | quarantined | tracking posts |\n"
                + "|---|---|---|---|---|---|---|\n"
                + "".join(
                    f"| {n} | {o['outcome']} | {o['kept_as']} | {o.get('rows_read', '')} | {o.get('rows_kept', '')} | "
                    f"{o.get('quarantined', '')} | {o.get('tracking_posts', '')} |\n"
                    for n, o in outcomes.items()
                )
            )
            return dg.MaterializeResult(
                metadata={
                    "files": dg.MetadataValue.json(outcomes),
                    "files_table": dg.MetadataValue.md(table),
                    "files_taken": len(outcomes) - len(failed),
                    "files_quarantined": len(quarantined),
                    "files_failed": dg.MetadataValue.json(failed),
                    "despatch_rows_total": int(db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.despatches")["n"][0]),
                },
                check_results=[
                    dg.AssetCheckResult(
                        check_name=FILES_CHECK,
                        passed=not failed,
                        severity=dg.AssetCheckSeverity.ERROR,
                        description=f"Not taken in, left in out/: {', '.join(failed)}" if failed else None,
                        metadata={"files_failed": dg.MetadataValue.json(failed)},
                    )
                ],
            )

    assets = [despatches] if config.systems.whistl is not None else []
    box_s = config.schedules.tracking_in_despatch_seconds
    return assets + [tracking_asset(oms, all_flows, box_s) for oms in tracking_systems(config)]
