"""`fulfil plan`: what the next live run would send, read from the ledgers and sending nothing. Every effect is
recorded before it is sent (`effects.intend`), so the effects due are exactly the ledger rows a delivery would
take: `pending` ones (due now), `shadow` ones (what a flow in shadow mode would send once live) and `sending` ones
(an earlier attempt whose outcome is unknown: looked up at the target first, sent only if it is not there). Beside
them, the exceptions holding orders back. For a flow in shadow mode this is the go-live check: switched to live,
its next run sends exactly what the plan listed. Tracking posts recorded in shadow are not listed: they never go
live (the integration running at the time told the customer), only those of despatches once live do."""

from __future__ import annotations

import polars as pl

from fulfil_assets import effects
from resources.warehouse import SCHEMA, WarehouseDb

DUE = (effects.PENDING, effects.SHADOW, effects.SENDING)
NEVER_LIVE = {"tracking_posts"}  # ledgers whose shadow rows stay shadow when the flow goes live
# Each ledger, what its rows do, and the columns that say to whom and what.
LEDGERS = {
    "wms_submissions": ("orders to send", "target", "order_ref"),
    "cancellations": ("cancellations to send", "target", "order_ref"),
    "amendments": ("amendments to send", "target", "order_ref"),
    "tracking_posts": ("tracking posts to send", "target", "tracking_number"),
    "stock_pushes": ("stock levels to set", "target", "sku"),
}


def due_effects(db: WarehouseDb, flow: str | None = None) -> pl.DataFrame:
    """One row per effect due: `ledger, what, flow, target, subject, status, detail` (the stock level `from -> to`
    for a stock push, the order's reference otherwise) and, for a stock push, `location` and `level`."""
    frames = []
    for table, (what, target, subject) in LEDGERS.items():
        if not db.table_exists(table):
            continue
        extra = ", s.location, s.level, o.level AS oms_level" if table == "stock_pushes" else ""
        join = (
            f" LEFT JOIN {SCHEMA}.oms_stock o ON o.oms = s.oms AND o.sku = s.sku AND o.location = s.location"
            if table == "stock_pushes"
            else ""
        )
        due = [s for s in DUE if not (table in NEVER_LIVE and s == effects.SHADOW)]
        where = f"s.status IN ({', '.join(repr(s) for s in due)})" + (" AND s.flow = :flow" if flow else "")
        rows = db.read(
            f"SELECT s.flow, s.{target} AS target, s.{subject} AS subject, s.status{extra} "
            f"FROM {SCHEMA}.{table} s{join} WHERE {where} ORDER BY s.created_at, s.idempotency_key",
            {"flow": flow} if flow else {},
            schema={"level": pl.Int64, "oms_level": pl.Int64},
        )
        if rows.is_empty():
            continue
        detail = (
            pl.format(
                "{} @ {}: {} -> {}", "subject", "location", pl.col("oms_level").cast(pl.String).fill_null("?"), "level"
            )
            if table == "stock_pushes"
            else pl.col("subject")
        )
        stock = table == "stock_pushes"
        frames.append(
            rows.select(
                pl.lit(table).alias("ledger"),
                pl.lit(what).alias("what"),
                "flow",
                "target",
                pl.col("subject").cast(pl.String),
                "status",
                detail.cast(pl.String).alias("detail"),
                (pl.col("location") if stock else pl.lit(None)).cast(pl.String).alias("location"),
                (pl.col("level") if stock else pl.lit(None)).cast(pl.Int64).alias("level"),
            )
        )
    schema = {**dict.fromkeys(("ledger", "what", "flow", "target", "subject", "status", "detail"), pl.String)}
    schema |= {"location": pl.String, "level": pl.Int64}
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def holding(db: WarehouseDb) -> pl.DataFrame:
    """Open exceptions holding orders back: `reason_code, owner, orders`."""
    return db.read(
        f"SELECT reason_code, owner, COUNT(*) AS orders FROM {SCHEMA}.order_exceptions WHERE resolved_at IS NULL "
        "GROUP BY reason_code, owner ORDER BY orders DESC, reason_code",
        schema={"orders": pl.Int64},
    )


def plan_text(due: pl.DataFrame, held: pl.DataFrame, limit: int = 20) -> str:
    """The plan for a person: per flow and target, what would go (the first `limit` of each), then what waits."""
    if due.is_empty():
        out = ["Nothing is due: the next run sends only what its own reads find."]
    else:
        out = []
        for (flow, what, target), group in due.group_by("flow", "what", "target", maintain_order=True):
            states = ", ".join(f"{n} {s}" for s, n in group.group_by("status").len().sort("status").iter_rows())
            out.append(f"{flow}: {group.height} {what} -> {target} ({states})")
            out += [f"  {d}" for d in group["detail"].head(limit).to_list()]
            if group.height > limit:
                out.append(f"  ... and {group.height - limit} more")
    if held.height:
        out.append("Held back (open exceptions): " + ", ".join(f"{r} ({o}) {n}" for r, o, n in held.iter_rows()))
    return "\n".join(out) + "\n"
