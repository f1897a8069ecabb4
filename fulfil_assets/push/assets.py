"""Push validated orders to Whistl as order files, through the `wms_submissions` ledger and the effect module."""

import json

import dagster as dg
import polars as pl

from fulfil_assets import effects
from fulfil_assets.config import FulfilConfig, flow_of, is_shadow, whistl_sources
from fulfil_assets.ledger import now_utc, resolve_wms_rejections
from fulfil_assets.push.whistl_files import ORDER_FILE_COLUMNS, order_file_rows
from fulfil_assets.push.whistl_inbox import WhistlInbox
from resources.file_drop import FileDrop
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

TABLE = "wms_submissions"
INTENT_COLUMNS = ("idempotency_key", "order_key", "flow", "target", "wms", "order_ref", "payload")


def submission_key(order_key: str) -> str:
    """The idempotency key of sending one order to Whistl."""
    return f"whistl:order:{order_key}"


def submission_intents(ready: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """One ledger row per ready order: its flow, and as payload the exact order-file rows it travels as."""
    if ready.is_empty():
        return pl.DataFrame(schema={c: pl.String for c in INTENT_COLUMNS})
    rows = order_file_rows(ready, lines).with_columns(pl.all().cast(pl.String))
    payloads = rows.group_by("order_reference", maintain_order=True).agg(
        pl.concat_list(list(ORDER_FILE_COLUMNS)).alias("cells")
    )
    payloads = payloads.with_columns(
        pl.col("cells").map_elements(lambda c: json.dumps(c.to_list()), return_dtype=pl.String).alias("payload")
    )
    return ready.join(payloads, left_on="order_ref", right_on="order_reference").select(
        pl.col("order_key").map_elements(submission_key, return_dtype=pl.String).alias("idempotency_key"),
        "order_key",
        "flow",
        pl.lit("whistl").alias("target"),
        pl.lit("whistl").alias("wms"),
        "order_ref",
        "payload",
    )


def ready_for(db: WarehouseDb, target: str, flows: list[str]) -> pl.DataFrame:
    """Paid, open, validated orders of `flows` that go to `target`, with their flow and what the target needs."""
    if not flows:
        return pl.DataFrame(schema={"order_key": pl.String, "flow": pl.String})
    names = ", ".join(f"'{f}'" for f in flows)
    return db.read(
        f"""SELECT o.*, v.flow, v.service_code, v.phone_normalised, v.postcode_normalised
            FROM {SCHEMA}.orders o JOIN {SCHEMA}.validated_orders v USING (order_key)
            WHERE v.ready AND v.wms = '{target}' AND o.status = 'open' AND v.flow IN ({names})"""
    )


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """The push stage for the flows fulfil.yaml configures."""
    sources = whistl_sources(config)
    flows = {s: flow_of(s, "whistl") for s in sources}
    shadow_flows = [f for f in flows.values() if is_shadow(config, f)]
    live_flows = [f for f in flows.values() if f not in shadow_flows]
    grace_s = 60.0 * (config.systems.whistl.ack_grace_minutes if config.systems.whistl else 0)

    @dg.asset(
        group_name="push",
        deps=[dg.AssetKey("validated_orders")],
        kinds={"whistl", "sftp"},
        tags={"fulfil/warehouse": "write"},
    )
    def wms_submissions(
        context: dg.AssetExecutionContext, warehouse: Warehouse, whistl_drop: FileDrop
    ) -> dg.MaterializeResult:
        """Orders sent to Whistl: every paid, open order with no open exception, of a flow that goes to Whistl,
        as `ord_*.csv` files in the warehouse's `in/` folder, each order once.

        Every send goes through the effect module: the ledger row (with the exact file rows as payload) is
        written first; senders claim rows in the database, so concurrent runs never send one twice; an attempt
        that was never confirmed is checked against what Whistl acknowledged before anything is resent. An order
        that stops being ready is held and goes out by itself once it is ready again; one the warehouse rejected
        goes again once its data changes. A flow in shadow mode records the files it would send, and sends
        nothing."""
        db = warehouse.get_db()
        now = now_utc()
        ready = ready_for(db, "whistl", list(flows.values()))
        lines = db.read(
            f"SELECT order_key, wms_line_no AS line_no, sku, quantity FROM {SCHEMA}.wms_order_lines "
            "WHERE wms = 'whistl'"
        )
        intents = submission_intents(ready, lines)
        rearmed: list[str] = []
        for flow in flows.values():
            mine = intents.filter(pl.col("flow") == flow)
            rearmed += effects.intend(db, TABLE, mine, shadow=flow in shadow_flows)[1]
        for flow in live_flows:
            effects.go_live(db, TABLE, f"flow = '{flow}'")
        # Rejected by the warehouse earlier, data changed since: `intend` armed it again; close the rejection.
        resolve_wms_rejections(db, [k.removeprefix("whistl:order:") for k in rearmed], now)
        ledger = db.read(f"SELECT idempotency_key, status FROM {SCHEMA}.{TABLE} WHERE wms = 'whistl'")
        # Held because it stopped being ready, ready again now: armed again (never lost). Rows no longer ready are
        # held by `deliver` (its `wanted`), the one place that decides it.
        ready_keys = intents.select("idempotency_key")
        held = ledger.filter(pl.col("status") == effects.HELD)
        effects.rearm(db, TABLE, held.join(ready_keys, on="idempotency_key")["idempotency_key"].to_list())
        with whistl_drop.session() as drop:
            inbox = WhistlInbox(db, drop)
            report = effects.deliver(
                db,
                TABLE,
                inbox,
                where="wms = 'whistl'",
                settle_s=grace_s,
                wanted=lambda rows: rows.join(ready_keys, on="idempotency_key", how="semi"),
                batches=inbox.batches,
                log=context.log.warning,
            )
        totals = db.read(f"SELECT status, COUNT(*) AS n FROM {SCHEMA}.{TABLE} GROUP BY status")
        return dg.MaterializeResult(
            metadata={
                "orders_sent": report.sent,
                "files_written": inbox.files,
                "found_already_at_whistl": report.found_at_target,
                "held": report.held,
                "deferred": report.deferred,
                "ready_orders": ready.height,
                "shadow_flows": dg.MetadataValue.json(shadow_flows),
                "drop": whistl_drop.describe(),
                "ledger_by_status": dg.MetadataValue.json(dict(totals.iter_rows()) if totals.height else {}),
            }
        )

    return dg.Definitions(assets=[wms_submissions])
