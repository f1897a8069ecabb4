"""Whistl's answers (acknowledgements, despatch confirmations, rejections) into the warehouse, and the tracking
assets that post to each order system."""

import fnmatch
import hashlib
import json
import time
from datetime import datetime
from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets import effects
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, is_shadow, whistl_in_shadow
from fulfil_assets.despatch.matching import match_despatches
from fulfil_assets.despatch.oms_tracking import TRACKING_SENDERS
from fulfil_assets.despatch.planning import plan_tracking
from fulfil_assets.despatch.tracking import fulfilment_intents
from fulfil_assets.despatch.whistl_files import (
    FileFormatError,
    parse_ack_file,
    parse_despatch_file,
    parse_rejection_file,
)
from fulfil_assets.ledger import adopt_amendments, mark_cancelled, now_utc, open_exceptions
from fulfil_assets.push.amendments import amend_too_late
from fulfil_assets.stage.common import ensure_columns
from resources.file_drop import DropFile, DropSession, FileDrop, keep_file
from resources.http import AuthError
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

FEEDBACK_PATTERNS = ("ack_*.csv", "shp_*.csv", "err_*.csv")  # matched whatever the case of the name


def feedback_files(drop: DropSession) -> list[DropFile]:
    """Whistl's acknowledgement, despatch and rejection files waiting in `out/` (`SHP_...CSV` counts too)."""
    return [f for f in drop.list("out", "*") if any(fnmatch.fnmatch(f.name.lower(), p) for p in FEEDBACK_PATTERNS)]


class WhistlFilesConfig(dg.Config):
    """Which files in Whistl's `out/` folder to take in; empty means every one waiting there."""

    file_names: list[str] = []


def take_despatch_file(
    db: WarehouseDb, name: str, data: bytes, now: datetime, flows: dict[str, bool]
) -> dict[str, int]:
    """Load one despatch confirmation: despatch rows, problems as exceptions, bad rows quarantined, and the
    tracking posts it calls for, each addressed to the order's own system (in its flow, shadow or live). Every
    write is keyed, so taking the same file twice changes nothing."""
    rows, bad = parse_despatch_file(data, name)
    # Only this file's orders are read: the tables grow with every file taken in.
    refs = {"refs": rows["order_ref"].unique().to_list()}
    sent = db.read(
        f"SELECT order_ref, order_key FROM {SCHEMA}.wms_submissions "
        f"WHERE wms = 'whistl' AND {db.any_of('order_ref', 'refs')}",
        refs,
        schema={"order_ref": pl.String, "order_key": pl.String},
    )
    lines = db.read(
        f"SELECT order_key, wms_line_no AS line_no, sku, quantity FROM {SCHEMA}.wms_order_lines "
        f"WHERE wms = 'whistl' AND {db.any_of('order_key', 'keys')}",
        {"keys": sent["order_key"].to_list()},
        schema={"order_key": pl.String, "line_no": pl.Int32, "sku": pl.String, "quantity": pl.Int64},
    )
    earlier = db.read(
        f"SELECT * FROM {SCHEMA}.despatches WHERE wms = 'whistl' AND {db.any_of('order_ref', 'refs')} "
        f"AND order_ref IN (SELECT order_ref FROM {SCHEMA}.wms_submissions WHERE wms = 'whistl')",
        refs,
    )
    matched, problems = match_despatches(rows, sent, lines, earlier)
    db.write("despatches", matched, mode="upsert", key=["wms", "despatch_ref", "line_no", "parcel_no"])
    open_exceptions(db, problems, "despatch_match", now)
    if bad.height:
        db.write(
            "quarantined_rows",
            bad.with_columns(pl.lit("whistl_despatch").alias("source"), pl.lit(now).alias("quarantined_at")),
        )
    # An order whose despatch does not add up (over-shipped, a line it never had) waits for the warehouse owner:
    # its exception is open and fulfil posts nothing to the customer's order (a person checks and posts it by hand).
    planned = plan_tracking(db, "whistl", matched, problems, name, now, flows)
    return {
        "rows_read": rows.height + bad.height,
        "rows_kept": matched.height,
        "quarantined": bad.height,
        "problems": problems.height + planned["short_shipped"],
        "tracking_posts": planned["tracking_posts"],
    }


def take_cancel_acks(db: WarehouseDb, acks: pl.DataFrame, now: datetime) -> None:
    """Whistl's answers to our cancellation files: `CANCELLED` confirms the cancellation (and the order's
    submission turns `cancelled`); `CANCEL_TOO_LATE` (picking had started) leaves it with the warehouse owner as
    an exception saying what the customer asked and when; `UNKNOWN_ORDER` means Whistl never held the order."""
    ledger = db.read(
        f"SELECT idempotency_key, order_key, order_ref, file_name, payload FROM {SCHEMA}.cancellations "
        f"WHERE wms = 'whistl' AND status IN ('{effects.SENT}', '{effects.SENDING}')"
    )
    hits = acks.join(ledger, on=["file_name", "order_ref"], how="inner")
    for row in hits.iter_rows(named=True):
        key, order_key = row["idempotency_key"], row["order_key"]
        if row["status"] == "CANCELLED" or row["detail"] == "UNKNOWN_ORDER":
            effects.report(db, "cancellations", [key], effects.ACKNOWLEDGED, confirmed=True)
            mark_cancelled(db, "whistl", [order_key])
        else:
            asked = json.loads(row["payload"])[0][2]
            effects.report(db, "cancellations", [key], effects.TOO_LATE, error=f"{row['detail']} ({row['ack_file']})")
            problem = pl.DataFrame(
                {
                    "order_key": [order_key],
                    "reason_code": ["CANCEL_TOO_LATE"],
                    "detail": [
                        f"customer cancelled order {row['order_ref']} at {asked}; Whistl answered {row['detail']} "
                        f"(picking had started): stop it at the warehouse or arrange a return"
                    ],
                }
            )
            open_exceptions(db, problem, "cancellation", now)


def take_amend_acks(db: WarehouseDb, acks: pl.DataFrame, now: datetime) -> None:
    """Whistl's answers to our amendment files: `AMENDED` makes the amended order what the submission holds;
    `AMEND_TOO_LATE` (picking had started) opens an exception for the warehouse owner saying what changed."""
    ledger = db.read(
        f"SELECT a.idempotency_key, a.order_key, a.order_ref, a.file_name, a.payload, s.payload AS held "
        f"FROM {SCHEMA}.amendments a JOIN {SCHEMA}.wms_submissions s "
        "ON s.idempotency_key = 'whistl:order:' || a.order_key "
        f"WHERE a.wms = 'whistl' AND a.status IN ('{effects.SENT}', '{effects.SENDING}')"
    )
    hits = acks.join(ledger, on=["file_name", "order_ref"], how="inner")
    adopt_amendments(db, "whistl", hits.filter(pl.col("status") == "AMENDED")["idempotency_key"].to_list())
    refused = hits.filter(pl.col("status") != "AMENDED")
    for row in refused.iter_rows(named=True):
        status = effects.TOO_LATE if row["detail"] == "AMEND_TOO_LATE" else effects.FAILED
        effects.report(db, "amendments", [row["idempotency_key"]], status, error=f"Whistl answered {row['detail']}")
    late = refused.filter(pl.col("detail") == "AMEND_TOO_LATE").with_columns(
        pl.format("Whistl answered {} ({})", "detail", "ack_file").alias("last_error")
    )
    open_exceptions(db, amend_too_late(late), "amendment", now)


def take_ack_file(db: WarehouseDb, name: str, data: bytes) -> dict[str, int]:
    """Load one acknowledgement: what Whistl received, per order file and order. An order it accepted moves from
    `sent` to `acknowledged` (refusals come as rejection files); answers to cancellation and amendment files
    settle the `cancellations` and `amendments` ledgers."""
    acks = parse_ack_file(data, name).filter(pl.col("order_ref") != "")
    db.write("wms_acknowledgements", acks, mode="upsert", key=["wms", "file_name", "order_ref"])
    kind = pl.col("file_name").str.to_lowercase()
    take_cancel_acks(db, acks.filter(kind.str.starts_with("can_")), now_utc())
    take_amend_acks(db, acks.filter(kind.str.starts_with("amd_")), now_utc())
    accepted = acks.filter(pl.col("status") == "ACCEPTED")
    if accepted.height:  # the submissions these answers are about: the order, in the file Whistl names
        sent = db.read(
            f"SELECT idempotency_key, order_ref, file_name FROM {SCHEMA}.wms_submissions "
            f"WHERE wms = 'whistl' AND {db.any_of('order_ref', 'refs')}",
            {"refs": accepted["order_ref"].unique().to_list()},
            schema={"idempotency_key": pl.String, "order_ref": pl.String, "file_name": pl.String},
        )
        keys = sent.join(accepted.select("order_ref", "file_name"), on=["order_ref", "file_name"], how="semi")
        effects.report(db, "wms_submissions", keys["idempotency_key"].to_list(), effects.ACKNOWLEDGED)
    return {"rows_read": acks.height, "rows_kept": acks.height, "quarantined": 0, "problems": 0}


def take_rejection_file(db: WarehouseDb, data: bytes, now: datetime) -> dict[str, int]:
    """Load one rejection file: the ledger row turns `rejected` and the order gets an exception with an owner."""
    # Refused cancellations are answered in the acknowledgement file too (take_cancel_acks): not order rejections.
    rejected = parse_rejection_file(data).filter(~pl.col("wms_code").is_in(["DUPLICATE_ORDER", "CANCEL_TOO_LATE"]))
    sent = db.read(f"SELECT order_ref, order_key, idempotency_key FROM {SCHEMA}.wms_submissions WHERE wms = 'whistl'")
    hits = rejected.join(sent, on="order_ref", how="inner")
    for row in hits.iter_rows(named=True):
        error = f"{row['wms_code']}: {row['detail']}"
        effects.report(db, "wms_submissions", [row["idempotency_key"]], effects.REJECTED, error=error)
    # A rejection of a reference fulfil never sent is news too: the warehouse owner finds out whose it is.
    strangers = rejected.join(sent, on="order_ref", how="anti").select(
        pl.format("whistl:{}", "order_ref").alias("order_key"),
        pl.lit("WMS_REJECTED").alias("reason_code"),
        pl.format(
            "Whistl rejected order {} ({}: {}), which fulfil never sent", "order_ref", "wms_code", "detail"
        ).alias("detail"),
    )
    found = hits.select(
        "order_key", "reason_code", pl.format("Whistl rejected the order: {}", "detail").alias("detail")
    )
    open_exceptions(db, pl.concat([found, strangers]), "wms_acceptance", now)
    problems = hits.height + strangers.height
    return {"rows_read": rejected.height, "rows_kept": hits.height, "quarantined": 0, "problems": problems}


LEFT_IN_PLACE = "out/ (left in place: Whistl's flows are in shadow)"


def keep_taken(drop: DropSession, name: str, data: bytes, digest: str, outcome: str, detail: str | None) -> str:
    """Move a file taken in to `out/archive/`, or one not taken in to `out/quarantine/` with the reason beside it
    (for whoever opens the folder). Returns where it went."""
    if outcome == "processed":
        return keep_file(drop, name, "out/archive", digest)
    kept = keep_file(drop, name, "out/quarantine", digest)
    folder, _, kept_name = kept.rpartition("/")
    reason = f"{name} ({len(data)} bytes, sha256 {digest}) was not taken in: {detail}\n"
    drop.write_atomic(folder, f"{kept_name}.reason.txt", reason.encode("utf-8"))
    return kept


def _take(
    db: WarehouseDb, drop: DropSession, name: str, log: dg.DagsterLogManager, flows: dict[str, bool], shadow: bool
) -> dict[str, Any]:
    """Take one feedback file in, once (by name and content hash), then archive it (or quarantine it with its
    reason beside it); in shadow the file stays where Whistl put it and nothing is written to its server."""
    data = drop.read("out", name)
    digest = hashlib.sha256(data).hexdigest()
    now = now_utc()
    seen = db.read(
        f"SELECT outcome, detail FROM {SCHEMA}.processed_files "
        "WHERE wms = 'whistl' AND file_name = :n AND content_hash = :h",
        {"n": name, "h": digest},
    )
    if seen.height:  # taken in before (in shadow it stayed): kept where its first outcome says, once live
        first, detail = seen.row(0)
        kept = LEFT_IN_PLACE if shadow else keep_taken(drop, name, data, digest, first, detail)
        log.info(f"{name}: already taken in ({first}); {kept}")
        return {"outcome": "duplicate", "kept_as": kept, "sha256": digest}
    kind = name.split("_", 1)[0].lower()
    try:
        if kind == "shp":
            counts = take_despatch_file(db, name, data, now, flows)
        elif kind == "ack":
            counts = take_ack_file(db, name, data)
        else:
            counts = take_rejection_file(db, data, now)
        outcome, detail = "processed", None
    except FileFormatError as exc:
        counts, outcome, detail = {"rows_read": 0, "rows_kept": 0}, "quarantined", str(exc)
        log.error(f"{name}: quarantined: {exc}")
    db.write(
        "processed_files",
        pl.DataFrame(
            [
                {
                    "wms": "whistl",
                    "file_name": name,
                    "size": len(data),
                    "content_hash": digest,
                    "kind": kind,
                    "outcome": outcome,
                    "detail": detail,
                    "rows_read": counts["rows_read"],
                    "rows_kept": counts["rows_kept"],
                    "processed_at": now,
                }
            ]
        ),
        mode="upsert",
        key=["wms", "file_name", "content_hash"],
    )
    kept = LEFT_IN_PLACE if shadow else keep_taken(drop, name, data, digest, outcome, detail)
    log.info(f"{name} -> {kept}")
    log.info(f"{name}: {outcome} {counts}")
    return {"outcome": outcome, "kept_as": kept, "sha256": digest, **counts, **({"reason": detail} if detail else {})}


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
    since processed (read from the ingested processed orders, tracking number included)."""
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
        f"AND s.status IN ('{effects.SENT}', '{effects.ACKNOWLEDGED}', '{effects.DESPATCHED}')",
        schema={"order_key": pl.String, "source_order_id": pl.String, "flow": pl.String},
    )
    # Also for orders whose parcels were posted one by one: what they left open (a line the parcels could not
    # name, such as a bundle the warehouse shipped as its components) is fulfilled here; the rest is not again.
    intents = fulfilment_intents(processed, links)
    effects.intend(db, "tracking_posts", intents, shadow=flows.get("shopify_linnworks", False))
    return intents.height


def tracking_asset(oms: str, flows: dict[str, bool], box_s: float) -> dg.AssetsDefinition:
    """`tracking_posts/<oms>`: the due posts of one order system, sent through the effect module, after whatever
    plans them in the same run (Whistl's files, Peoplevox's despatch lines, Linnworks' processed orders). In a
    despatch run it posts for at most `box_s` seconds; `tracking_job` posts whatever is left."""
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
        required_resource_keys={"warehouse", oms},
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
    )
    def despatches(
        context: dg.AssetExecutionContext, config: WhistlFilesConfig, warehouse: Warehouse, whistl_drop: FileDrop
    ) -> dg.MaterializeResult:
        """Acknowledgements, despatch confirmations and rejections from Whistl, each file taken in exactly once
        (a table of processed files by name and content hash is the record). Good rows land in `despatches`;
        bad rows are quarantined with a reason; rows for orders fulfil never sent, shipping more than ordered,
        or shipping none of a line, become exceptions; a file that cannot be read at all moves to
        `out/quarantine/`. Tracking posts are planned for the order's own system. While every Whistl flow is in
        shadow, files are read and recorded but left in `out/`."""
        with warehouse.session() as db:
            outcomes: dict[str, dict[str, Any]] = {}
            with whistl_drop.session() as drop:
                waiting = {f.name for f in feedback_files(drop)}
                names = [n for n in config.file_names if n in waiting] if config.file_names else sorted(waiting)
                for name in names:
                    outcomes[name] = _take(db, drop, name, context.log, all_flows, shadow)
            quarantined = [n for n, o in outcomes.items() if o["outcome"] == "quarantined"]
            if quarantined:
                context.log.warning(f"quarantined files: {quarantined}")
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
                    "files_taken": len(outcomes),
                    "files_quarantined": len(quarantined),
                    "despatch_rows_total": int(db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.despatches")["n"][0]),
                }
            )

    assets = [despatches] if config.systems.whistl is not None else []
    box_s = config.schedules.tracking_in_despatch_seconds
    return assets + [tracking_asset(oms, all_flows, box_s) for oms in tracking_systems(config)]
