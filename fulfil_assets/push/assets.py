"""Push validated orders to their flow's target (Whistl order files, Peoplevox `SaveData`, Linnworks
`CreateOrders`), through the `wms_submissions` ledger and the effect module."""

import json
from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets import effects
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, is_shadow, target_of
from fulfil_assets.ledger import adopt_amendments, now_utc, open_exceptions, resolve_wms_rejections
from fulfil_assets.push.amendments import amend_too_late, amendment_intents
from fulfil_assets.push.common import INTENT_SCHEMA, record_intents
from fulfil_assets.push.linnworks_orders import LinnworksAmends, LinnworksOrders, linnworks_payloads
from fulfil_assets.push.peoplevox_orders import PeoplevoxAmends, PeoplevoxOrders, peoplevox_payloads
from fulfil_assets.push.source_check import (
    Recheck,
    bigcommerce_recheck,
    cin7_recheck,
    combined,
    linnworks_recheck,
    shopify_recheck,
)
from fulfil_assets.push.whistl_inbox import ORDERS_PER_FILE, WhistlInbox
from fulfil_assets.push.whistl_order_files import order_file_rows
from fulfil_assets.whistl_formats import ORDER_FILE_COLUMNS
from resources.file_drop import FileDrop
from resources.linnworks import LinnworksResource
from resources.peoplevox import PeoplevoxResource
from resources.shopify import ShopifyResource
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

TABLE = "wms_submissions"


def submission_intents(ready: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """One Whistl ledger row per ready order: its flow, and as payload the exact order-file rows it travels as."""
    if ready.is_empty():
        return pl.DataFrame(schema=INTENT_SCHEMA)
    rows = order_file_rows(ready, lines).with_columns(pl.all().cast(pl.String))
    payloads = rows.group_by("order_reference", maintain_order=True).agg(
        pl.concat_list(list(ORDER_FILE_COLUMNS)).alias("cells")
    )
    payloads = payloads.with_columns(
        pl.col("cells").map_elements(lambda c: json.dumps(c.to_list()), return_dtype=pl.String).alias("payload")
    )
    keyed = ready.join(payloads, left_on="order_ref", right_on="order_reference")
    return keyed_intents(keyed.select("order_key", "order_ref", "flow", "payload"), "whistl")


def intents_for(db: WarehouseDb, config: FulfilConfig, target: str) -> pl.DataFrame:
    """The `wms_submissions` ledger rows of every order ready for `target` now, each with the exact payload the
    target receives: what a push run records and sends, and what `fulfil replay` records for a window."""
    ready = ready_for(db, target, flows_to(config, target))
    if target == "whistl":
        lines = db.read(
            f"SELECT order_key, wms_line_no AS line_no, sku, quantity FROM {SCHEMA}.target_order_lines "
            "WHERE wms = 'whistl'"
        )
        return submission_intents(ready, lines)
    payloads = {"peoplevox": peoplevox_payloads, "linnworks": linnworks_payloads}[target]
    return keyed_intents(payloads(ready, order_lines_for(db, target)), target)


def ready_for(db: WarehouseDb, target: str, flows: list[str]) -> pl.DataFrame:
    """Paid, open, validated orders of `flows` that go to `target`, with their flow and what the target needs."""
    if not flows:
        return pl.DataFrame(schema={"order_key": pl.String, "flow": pl.String})
    names = ", ".join(f"'{f}'" for f in flows)
    return db.read(
        f"""SELECT o.*, v.flow, v.service_code, v.target_location, v.phone_normalised, v.postcode_normalised
            FROM {SCHEMA}.orders o JOIN {SCHEMA}.validated_orders v USING (order_key)
            WHERE v.ready AND v.wms = '{target}' AND o.status = 'open' AND v.flow IN ({names})"""
    )


def submit(
    context: dg.AssetExecutionContext,
    db: WarehouseDb,
    config: FulfilConfig,
    target: str,
    intents: pl.DataFrame,
    sender: effects.Target,
    *,
    settle_s: float = 0.0,
    batches: Callable[[pl.DataFrame], Iterable[pl.DataFrame]] | None = None,
    recheck: Recheck | None = None,
    amender: effects.Target | None = None,
    chunk: int = effects.CLAIM_CHUNK,
) -> dict[str, Any]:
    """Send `intents` (ledger rows of orders ready for `target`) through the effect module: record them (as
    `shadow` for a flow in shadow mode), make recorded shadow rows due for live flows, arm again what was held
    or refused and is ready (or fixed) now, then deliver. What the target refused becomes a `WMS_REJECTED`
    exception in its own words. Returns the run's metadata."""
    flows = flows_to(config, target)
    shadow = [f for f in flows if is_shadow(config, f)]
    record_ready(db, config, intents, flows)
    ready_keys = intents.select("idempotency_key")
    report = effects.deliver(
        db,
        TABLE,
        sender,
        where=f"wms = '{target}'",
        settle_s=settle_s,
        wanted=lambda rows: rows.join(ready_keys, on="idempotency_key", how="semi"),
        batches=batches,
        recheck=recheck,
        log=context.log.warning,
        chunk=chunk,
    )
    refused = db.read(
        f"SELECT order_key, last_error FROM {SCHEMA}.{TABLE} WHERE wms = '{target}' AND status = '{effects.FAILED}'"
    )
    open_exceptions(
        db,
        refused.select("order_key", pl.lit("WMS_REJECTED").alias("reason_code"), pl.col("last_error").alias("detail")),
        "wms_acceptance",
        now_utc(),
    )
    amended = send_amendments(context, db, config, target, intents, amender, settle_s, batches) if amender else {}
    totals = db.read(f"SELECT status, COUNT(*) AS n FROM {SCHEMA}.{TABLE} WHERE wms = '{target}' GROUP BY status")
    metadata: dict[str, Any] = {
        "summary": dg.MetadataValue.md(report.summary(f"orders to {target}")),
        **amended,
        "orders_sent": report.sent,
        "refused": report.failed,
        "found_already_at_target": report.found_at_target,
        "held": report.held,
        "deferred": report.deferred,
        "ready_orders": intents.height,
        "shadow_flows": dg.MetadataValue.json(shadow),
        **{f"ledger_{status}": int(n) for status, n in totals.iter_rows()},
        "first_errors": dg.MetadataValue.json(report.errors[:5]),
    }
    return metadata


def record_ready(db: WarehouseDb, config: FulfilConfig, intents: pl.DataFrame, flows: list[str]) -> None:
    """Record the submissions of orders ready now (`intents`, of `flows`), sending nothing: new ones due (`shadow`
    for a flow in shadow mode), one refused earlier whose data changed since armed again with its rejection
    closed, one held because it had stopped being ready armed again (never lost). Rows no longer ready are held
    by `deliver` (its `wanted`), the one place that decides it. A push run and `fulfil replay` record alike."""
    rearmed = record_intents(db, config, TABLE, intents, flows)
    resolve_wms_rejections(db, [k.split(":order:", 1)[1] for k in rearmed], now_utc())
    held = db.read(
        f"SELECT idempotency_key FROM {SCHEMA}.{TABLE} WHERE status = '{effects.HELD}' "
        f"AND {db.any_of('idempotency_key', 'keys')}",
        {"keys": intents["idempotency_key"].to_list()},
        schema={"idempotency_key": pl.String},
    )
    effects.rearm(db, TABLE, held["idempotency_key"].to_list())


def send_amendments(
    context: dg.AssetExecutionContext,
    db: WarehouseDb,
    config: FulfilConfig,
    target: str,
    intents: pl.DataFrame,
    amender: effects.Target,
    settle_s: float,
    batches: Callable[[pl.DataFrame], Iterable[pl.DataFrame]] | None,
) -> dict[str, Any]:
    """Orders whose content changed after they were sent go to `target` as amendments (`amendments` ledger),
    once per version; what the target refuses as too late opens `AMEND_TOO_LATE` saying what changed. Where the
    call's answer is the confirmation (not Whistl: its acknowledgement file confirms), the confirmed amendment
    becomes what the submission holds."""
    ledger = db.read(f"SELECT order_key, status, payload_hash FROM {SCHEMA}.{TABLE} WHERE wms = '{target}'")
    record_intents(db, config, "amendments", amendment_intents(intents, ledger, target), flows_to(config, target))
    report = effects.deliver(
        db,
        "amendments",
        amender,
        where=f"wms = '{target}'",
        settle_s=settle_s,
        batches=batches,
        log=context.log.warning,
    )
    if target != "whistl":
        done = db.read(
            f"SELECT idempotency_key FROM {SCHEMA}.amendments WHERE wms = '{target}' AND status = '{effects.SENT}'"
        )
        adopt_amendments(db, target, done["idempotency_key"].to_list())
    late = db.read(
        f"SELECT a.order_key, a.last_error, a.payload, s.payload AS held FROM {SCHEMA}.amendments a "
        f"JOIN {SCHEMA}.{TABLE} s ON s.idempotency_key = '{target}:order:' || a.order_key "
        f"WHERE a.wms = '{target}' AND a.status = '{effects.TOO_LATE}'"
    )
    open_exceptions(db, amend_too_late(late), "amendment", now_utc())
    return {"amendments_sent": report.sent, "amendments_too_late": late.height}


def source_recheck(
    context: dg.AssetExecutionContext, db: WarehouseDb, config: FulfilConfig, target: str
) -> Recheck | None:
    """The last look at source before orders leave for `target`, for each order system that feeds it
    (Linnworks by id; Cin7 Core, BigCommerce and Shopify by what changed since ingest read the order)."""
    sources = {FLOW_SYSTEMS[f][0] for f in flows_to(config, target)}
    read_at: dict[str, Any] = {}
    if sources - {"linnworks"}:
        names = ", ".join(f"'{s}'" for s in sorted(sources))
        stamps = db.read(
            f"SELECT order_key, updated_at FROM {SCHEMA}.orders WHERE status = 'open' AND source_system IN ({names})"
        )
        read_at = dict(stamps.iter_rows()) if stamps.height else {}
    checks: dict[str, Callable[[Any], Recheck]] = {
        "linnworks": linnworks_recheck,
        "cin7": lambda c: cin7_recheck(c, read_at),
        "bigcommerce": lambda c: bigcommerce_recheck(c, read_at),
        "shopify": lambda c: shopify_recheck(c, read_at),
    }
    return combined([checks[s](getattr(context.resources, s).get_client()) for s in sorted(sources) if s in checks])


def sending_resources(config: FulfilConfig, target: str, *keys: str) -> set[str]:
    """The resources a sending asset needs: its own, and each source system it rechecks orders with."""
    return {"warehouse", *keys} | {FLOW_SYSTEMS[f][0] for f in flows_to(config, target)}


def flows_to(config: FulfilConfig, target: str) -> list[str]:
    """The configured flows that send orders to `target`."""
    return [f for f in config.flows if target_of(f) == target]


def order_lines_for(db: WarehouseDb, target: str) -> pl.DataFrame:
    """Each order's lines as `target` receives them now (validation wrote them; for a sent order, a difference
    from what the target holds is an amendment)."""
    return db.read(
        f"""SELECT w.order_key, w.wms_line_no AS line_no, w.sku, w.quantity, l.unit_price
            FROM {SCHEMA}.target_order_lines w LEFT JOIN {SCHEMA}.order_lines l
              ON l.order_key = w.order_key AND l.line_no = w.source_line_no
            WHERE w.wms = '{target}'"""
    )


def keyed_intents(payloads: pl.DataFrame, target: str) -> pl.DataFrame:
    """Ledger rows (`INTENT_SCHEMA`) from `order_key, order_ref, flow, payload` for `target`."""
    return payloads.select(
        pl.format(f"{target}:order:{{}}", "order_key").alias("idempotency_key"),
        "order_key",
        "flow",
        pl.lit(target).alias("target"),
        pl.lit(target).alias("wms"),
        "order_ref",
        "payload",
    )


# The asset that sends orders to each target.
SUBMISSION_ASSETS = {
    "whistl": "wms_submissions",
    "peoplevox": "peoplevox_submissions",
    "linnworks": "linnworks_submissions",
}


def whistl_submissions(config: FulfilConfig) -> dg.AssetsDefinition:
    """The asset that sends orders to Whistl."""
    grace_s = 60.0 * (config.systems.whistl.ack_grace_minutes if config.systems.whistl else 0)

    @dg.asset(
        name="wms_submissions",
        group_name="push",
        deps=[dg.AssetKey("validated_orders")],
        kinds={"whistl", "sftp"},
        required_resource_keys=sending_resources(config, "whistl", "whistl_drop"),  # and each source system re-checked
    )
    def wms_submissions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Orders sent to Whistl: every paid, open order with no open exception, of a flow that goes to Whistl,
        as `ord_*.csv` files in the warehouse's `in/` folder, each order once.

        Every send goes through the effect module: the ledger row (with the exact file rows as payload) is
        written first; senders claim rows in the database, so concurrent runs never send one twice; an attempt
        that was never confirmed is checked against what Whistl acknowledged before anything is resent. An order
        that stops being ready is held and goes out by itself once it is ready again; one the warehouse rejected
        goes again once its data changes. Right before a file goes, each order is checked once more at its
        source: one cancelled there since ingest read it is held, not sent. A flow in shadow mode records the
        files it would send, and sends nothing."""
        whistl_drop: FileDrop = context.resources.whistl_drop
        with context.resources.warehouse.session() as db:
            intents = intents_for(db, config, "whistl")
            with whistl_drop.session() as drop:
                inbox = WhistlInbox(db, drop)
                metadata = submit(
                    context,
                    db,
                    config,
                    "whistl",
                    intents,
                    inbox,
                    settle_s=grace_s,
                    batches=inbox.batches,
                    chunk=ORDERS_PER_FILE,
                    recheck=source_recheck(context, db, config, "whistl"),
                    amender=WhistlInbox(db, drop, "amendments"),
                )
            return dg.MaterializeResult(
                metadata={**metadata, "files_written": inbox.files, "drop": whistl_drop.describe()}
            )

    return wms_submissions


def peoplevox_submissions(config: FulfilConfig) -> dg.AssetsDefinition:
    """The asset that sends orders to Peoplevox."""

    @dg.asset(
        name="peoplevox_submissions",
        group_name="push",
        deps=[dg.AssetKey("validated_orders")],
        kinds={"peoplevox", "soap"},
        pool="peoplevox",
        required_resource_keys=sending_resources(config, "peoplevox", "peoplevox"),  # and each source system re-checked
    )
    def peoplevox_submissions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Orders sent to Peoplevox (rows of the `wms_submissions` ledger with `wms = 'peoplevox'`): every paid,
        open order with no open exception of a flow that goes to Peoplevox, saved through `SaveData` as a
        `Sales orders` row and its `Sales order items`, each order once. Peoplevox's answer is read row by row:
        an order it refuses becomes a `WMS_REJECTED` exception in Peoplevox's own words and goes again once its
        data changes. Before resending an attempt whose outcome is unknown, the order is looked up in Peoplevox
        by its number, and right before the send each order is checked once more at its source (cancelled
        there since ingest: held, not sent). The account's save templates are checked first (`GetSaveTemplate`)."""
        peoplevox: PeoplevoxResource = context.resources.peoplevox
        with context.resources.warehouse.session() as db:
            intents = intents_for(db, config, "peoplevox")
            client = peoplevox.get_client()
            sender = PeoplevoxOrders(client)
            if not all(is_shadow(config, f) for f in flows_to(config, "peoplevox")):
                sender.check_templates()
            metadata = submit(
                context,
                db,
                config,
                "peoplevox",
                intents,
                sender,
                batches=sender.batches,
                recheck=source_recheck(context, db, config, "peoplevox"),
                amender=PeoplevoxAmends(client),
            )
            return dg.MaterializeResult(metadata={**metadata, "save_calls": sender.calls, **client.stats.as_metadata()})

    return peoplevox_submissions


def linnworks_submissions(config: FulfilConfig) -> dg.AssetsDefinition:
    """The asset that creates storefront orders in Linnworks."""

    @dg.asset(
        name="linnworks_submissions",
        group_name="push",
        deps=[dg.AssetKey("validated_orders")],
        kinds={"shopify", "linnworks"},
    )
    def linnworks_submissions(
        context: dg.AssetExecutionContext, warehouse: Warehouse, linnworks: LinnworksResource, shopify: ShopifyResource
    ) -> dg.MaterializeResult:
        """Shopify orders created in Linnworks (rows of the `wms_submissions` ledger with `wms = 'linnworks'`):
        every paid, open order with no open exception of `shopify_linnworks`, as a Linnworks channel order
        (`Orders/CreateOrders`) with its variants as SKUs, at the Linnworks location its Shopify location maps to
        in `locations.csv`, the Shopify order id kept as external reference so the order can be found again.
        Each order once: an attempt whose outcome is unknown is looked up in Linnworks by reference before
        anything is resent, and Linnworks itself skips a reference it already holds."""
        with warehouse.session() as db:
            intents = intents_for(db, config, "linnworks")
            client = linnworks.get_client()
            sender = LinnworksOrders(client)
            recheck = source_recheck(context, db, config, "linnworks")
            metadata = submit(
                context,
                db,
                config,
                "linnworks",
                intents,
                sender,
                batches=sender.batches,
                recheck=recheck,
                amender=LinnworksAmends(client),
            )
            return dg.MaterializeResult(
                metadata={**metadata, "create_calls": sender.calls, **client.stats.as_metadata()}
            )

    return linnworks_submissions
