"""Push validated orders to Whistl as order files, through the `wms_submissions` ledger."""

import hashlib

import dagster as dg
import polars as pl

from fulfil_assets.ledger import insert_new, mark, now_utc, read_ledger, resolve_wms_rejections
from fulfil_assets.push.whistl_files import ORDER_FILE_COLUMNS, order_file_name, order_file_rows, render_csv
from resources.file_drop import FileDrop
from resources.warehouse import SCHEMA, Warehouse

ORDERS_PER_FILE = 500


def submission_key(order_key: str) -> str:
    """The idempotency key of sending one order to Whistl."""
    return f"whistl:order:{order_key}"


@dg.asset(
    group_name="push",
    deps=[dg.AssetKey("validated_orders")],
    kinds={"whistl", "sftp"},
    tags={"fulfil/warehouse": "write"},
)
def wms_submissions(
    context: dg.AssetExecutionContext, warehouse: Warehouse, whistl_drop: FileDrop
) -> dg.MaterializeResult:
    """Orders sent to Whistl: every paid, open order with no open exception, written as `ord_*.csv` order files
    to the warehouse's `in/` folder (temporary name, then rename).

    The ledger row is written before the file, so a crash or re-run never sends an order twice and never loses
    one: rows left `writing` are resent under the same file name unless that file already arrived. An order the
    warehouse rejected goes again by itself once its data changes (the exception is fixed at source)."""
    db = warehouse.get_db()
    now = now_utc()
    ready = db.read(
        f"""SELECT o.*, v.service_code, v.phone_normalised, v.postcode_normalised
            FROM {SCHEMA}.orders o JOIN {SCHEMA}.validated_orders v USING (order_key)
            WHERE v.ready AND v.wms = 'whistl' AND o.status = 'open'"""
    )
    ledger = read_ledger(db, "wms_submissions", "wms = 'whistl'")
    known = set(ledger["order_key"].to_list()) if ledger.height else set()
    # Rejected earlier, data changed since: arm it again.
    rearm: list[str] = []
    if ledger.height and ready.height:
        changed = (
            ledger.filter(pl.col("status") == "rejected")
            .join(ready.select("order_key", "content_hash"), on="order_key")
            .filter(pl.col("payload_hash") != pl.col("content_hash"))
        )
        rearm = changed["idempotency_key"].to_list()
    new = ready.filter(~pl.col("order_key").is_in(list(known)))
    lines = db.read(
        f"SELECT order_key, wms_line_no AS line_no, sku, quantity FROM {SCHEMA}.wms_order_lines WHERE wms = 'whistl'"
    )

    # 1. Intend: a ledger row per new order, with the file it will travel in.
    batches: list[tuple[str, pl.DataFrame]] = []
    for i, start in enumerate(range(0, new.height, ORDERS_PER_FILE)):
        batches.append((order_file_name(now, i), new.slice(start, ORDERS_PER_FILE)))
    intended = [
        pl.DataFrame(
            {
                "idempotency_key": [submission_key(k) for k in chunk["order_key"]],
                "order_key": chunk["order_key"],
                "status": "writing",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
                "wms": "whistl",
                "order_ref": chunk["order_ref"],
                "file_name": name,
                "payload_hash": chunk["content_hash"],
            }
        )
        for name, chunk in batches
    ]
    if intended:
        insert_new(db, "wms_submissions", pl.concat(intended))
    if rearm:
        rearm_file = order_file_name(now, len(batches))
        mark(db, "wms_submissions", rearm, "writing", extra={"file_name": rearm_file})
        resolve_wms_rejections(db, [k.removeprefix("whistl:order:") for k in rearm], now)
    # 2. Send every row still `writing` (new ones and any a crash left behind), file by file.
    pending = read_ledger(db, "wms_submissions", "wms = 'whistl' AND status = 'writing'")
    sent = rows_sent = 0
    with whistl_drop.session() as drop:
        for file_name in sorted(set(pending["file_name"].to_list()) if pending.height else []):
            batch = pending.filter(pl.col("file_name") == file_name)
            keys = batch["idempotency_key"].to_list()
            if drop.exists("in", file_name):
                mark(db, "wms_submissions", keys, "sent", attempt=True)
                context.log.info(f"{file_name} had already arrived; marked {len(keys)} orders sent")
                continue
            orders = ready.join(batch.select("order_key"), on="order_key")
            missing = set(batch["order_key"].to_list()) - set(orders["order_key"].to_list())
            if missing:
                # No longer ready (cancelled, or a new exception) between intent and send: hold them back.
                held = batch.filter(pl.col("order_key").is_in(list(missing)))["idempotency_key"].to_list()
                mark(db, "wms_submissions", held, "held", error="no longer ready to send")
            if orders.is_empty():
                continue
            rows = order_file_rows(orders, lines)
            payload = render_csv(rows, ORDER_FILE_COLUMNS)
            drop.write_atomic("in", file_name, payload)
            sent_keys = [submission_key(k) for k in orders["order_key"]]
            mark(
                db,
                "wms_submissions",
                sent_keys,
                "sent",
                attempt=True,
                result=f"{file_name} sha256:{hashlib.sha256(payload).hexdigest()[:16]}",
            )
            sent += len(sent_keys)
            rows_sent += rows.height
            context.log.info(f"wrote {file_name}: {len(sent_keys)} orders, {rows.height} lines")
    totals = db.read(f"SELECT status, COUNT(*) AS n FROM {SCHEMA}.wms_submissions GROUP BY status")
    return dg.MaterializeResult(
        metadata={
            "orders_sent": sent,
            "lines_sent": rows_sent,
            "ready_orders": ready.height,
            "drop": whistl_drop.describe(),
            "ledger_by_status": dg.MetadataValue.json(dict(totals.iter_rows()) if totals.height else {}),
        }
    )
