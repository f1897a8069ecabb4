"""Amendments: an order whose content changed in its order system after it was sent (an address edit, a new
service, a line added, removed or changed) is an amendment to the order the warehouse holds, never a second
order. Before picking it is sent on; from picking on it becomes `AMEND_TOO_LATE` for the warehouse owner, saying
what changed."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl

from fulfil_assets.effects import payload_hash
from fulfil_assets.ledger import payload_lines
from fulfil_assets.push.cancellations import AT_WMS
from fulfil_assets.push.common import INTENT_SCHEMA
from fulfil_assets.whistl_formats import ORDER_FILE_COLUMNS

# The line cells of a Whistl order file's rows (the first row stands for the order's own fields).
LINE_FIELDS = ("line_number", "sku", "quantity")


def amendment_intents(intents: pl.DataFrame, ledger: pl.DataFrame, wms: str) -> pl.DataFrame:
    """Ledger rows for ready orders whose payload now differs from what the WMS was sent (`ledger`:
    `order_key, status, payload_hash` of the submissions): one row per new version of the order, keyed
    `<wms>:amend:<order_key>:<first 16 of the new payload's hash>`."""
    if intents.is_empty() or ledger.is_empty():
        return pl.DataFrame(schema=INTENT_SCHEMA)
    sent = ledger.filter(pl.col("status").is_in(AT_WMS)).select("order_key", pl.col("payload_hash").alias("_sent"))
    changed = (
        intents.with_columns(pl.col("payload").map_elements(payload_hash, return_dtype=pl.String).alias("_now"))
        .join(sent, on="order_key")
        .filter(pl.col("_now") != pl.col("_sent"))
    )
    return changed.select(
        pl.format(f"{wms}:amend:{{}}:{{}}", "order_key", pl.col("_now").str.slice(0, 16)).alias("idempotency_key"),
        "order_key",
        "flow",
        pl.lit(wms).alias("target"),
        pl.lit(wms).alias("wms"),
        "order_ref",
        "payload",
    ).cast(INTENT_SCHEMA)  # type: ignore[arg-type]


def what_changed(sent: str, now: str) -> str:
    """What differs between the payload the WMS holds and the amended one, for a person to read: the order's
    fields (a Whistl order file's first row, or a Peoplevox `Sales orders` row), then its lines by SKU."""
    before, after = json.loads(sent), json.loads(now)
    if isinstance(before, dict) and isinstance(after, dict):
        b, a = before.get("order", {}), after.get("order", {})
        pairs = [(k, b.get(k), a.get(k)) for k in a]
        wms = "peoplevox" if "items" in before and "items" in after else "linnworks"  # a Linnworks order: no lines
    elif before and after:
        pairs = [(k, x, y) for k, x, y in zip(ORDER_FILE_COLUMNS, before[0], after[0], strict=False)]
        pairs = [p for p in pairs if p[0] not in LINE_FIELDS]
        wms = "whistl"
    else:
        return "the order"
    fields = [f"{k}: {x!r} -> {y!r}" for k, x, y in pairs if x != y]
    return ", ".join(fields + line_changes(payload_lines(wms, sent) or [], payload_lines(wms, now) or [])) or (
        "the order lines"
    )


def line_changes(held: list[tuple[int, str, int]], wanted: list[tuple[int, str, int]]) -> list[str]:
    """Each SKU whose quantity differs between two versions of an order's lines: `SKU x1 -> x2`, added or removed."""
    before, after = Counter(), Counter()
    for _, sku, quantity in held:
        before[sku] += quantity
    for _, sku, quantity in wanted:
        after[sku] += quantity
    changes = []
    for sku in sorted(before.keys() | after.keys()):
        if before[sku] != after[sku]:
            if not before[sku]:
                changes.append(f"{sku} added x{after[sku]}")
            elif not after[sku]:
                changes.append(f"{sku} removed (was x{before[sku]})")
            else:
                changes.append(f"{sku} x{before[sku]} -> x{after[sku]}")
    return changes


def amend_too_late(late: pl.DataFrame) -> pl.DataFrame:
    """`AMEND_TOO_LATE` exceptions for amendments the WMS refused (`late`: order_key, last_error, payload and the
    payload the WMS `held`): what the customer changed, and what the WMS said."""
    rows = [
        {
            "order_key": r["order_key"],
            "reason_code": "AMEND_TOO_LATE",
            "detail": f"changed after it was sent ({what_changed(r['held'], r['payload'])}); {r['last_error']}: "
            "correct it at the warehouse by hand or stop the parcel",
        }
        for r in late.iter_rows(named=True)
    ]
    return pl.DataFrame(rows, schema={"order_key": pl.String, "reason_code": pl.String, "detail": pl.String})
