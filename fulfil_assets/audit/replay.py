"""`fulfil replay`: after a mapping or rule was fixed, the orders placed in a window go through the ledgers again from
what fulfil already holds, calling no system. The replay job stages the raw tables, validates the window's orders
with today's rules and mapping tables, then records in `wms_submissions` (through the effect module's `intend`)
each order of the window that is ready now: exactly the rows a live push run would record, by the same idempotency
keys (one sent or confirmed stays as it is; one not yet attempted takes the new payload; one the target refused is
armed again with its rejection closed), so the next push run sends only what is newly due, once. Orders outside
the window keep their verdicts until their order system's next order sync checks them (`orders_to_check`)."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from fulfil_assets import effects, routing
from fulfil_assets.config import FulfilConfig, target_of
from fulfil_assets.ledger import now_utc
from fulfil_assets.push.assets import TABLE, flows_to, intents_for, record_ready
from fulfil_assets.validate.assets import record_validation, validate_targets
from resources.warehouse import SCHEMA, WarehouseDb

PER_FLOW_SCHEMA = {
    "flow": pl.String,
    "orders_in_window": pl.UInt32,
    "released": pl.UInt32,
    "already_recorded": pl.UInt32,
    "still_held": pl.UInt32,
}


def parse_moment(text: str) -> datetime:
    """An ISO date or date-time as an aware UTC datetime (a bare date is its midnight, UTC)."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def in_window(orders: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """The orders placed in `[start, end)` (by the order system's own `created_at`)."""
    created = pl.col("created_at")
    dtype = orders.schema["created_at"]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:  # a warehouse column stored without its zone
        created = created.dt.replace_time_zone("UTC")
    return orders.filter(created.is_between(start, end, closed="left"))


def released_per_flow(
    window: pl.DataFrame, intents: pl.DataFrame, before: pl.DataFrame, after: pl.DataFrame
) -> pl.DataFrame:
    """Per flow: the window's open orders, those the replay made due (no ledger row before, one held and ready
    again, or one refused and fixed since), those already recorded (not yet sent, or sent), and those still held
    by an exception. `window` holds
    `order_key, flow, ready`; `before` and `after` the ledger's `idempotency_key, status` for `intents`."""
    due = (effects.PENDING, effects.SHADOW)
    changed = (
        intents.select("idempotency_key", "flow")
        .join(before.rename({"status": "was"}), on="idempotency_key", how="left")
        .join(after, on="idempotency_key", how="left")
        .with_columns(
            released=pl.col("status").is_in(due)
            & (pl.col("was").is_null() | pl.col("was").is_in([effects.HELD, *effects.REFUSED]))
        )
    )
    ledger = changed.group_by("flow").agg(
        pl.col("released").sum().cast(pl.UInt32), (~pl.col("released")).sum().cast(pl.UInt32).alias("already_recorded")
    )
    orders = window.group_by("flow").agg(
        pl.len().alias("orders_in_window"), (~pl.col("ready")).sum().cast(pl.UInt32).alias("still_held")
    )
    return (
        orders.join(ledger, on="flow", how="full", coalesce=True)
        .select(list(PER_FLOW_SCHEMA))
        .fill_null(0)
        .cast(PER_FLOW_SCHEMA)
        .sort("flow")
    )


def _statuses(db: WarehouseDb, keys: list[str]) -> pl.DataFrame:
    return db.read(
        f"SELECT idempotency_key, status FROM {SCHEMA}.{TABLE} WHERE {db.any_of('idempotency_key', 'keys')}",
        {"keys": keys},
        schema={"idempotency_key": pl.String, "status": pl.String},
    )


def replay_window(
    db: WarehouseDb,
    config: FulfilConfig,
    start: datetime,
    end: datetime,
    flows: list[str],
    exp_dir: Path,
    log: Any,
) -> pl.DataFrame:
    """Validate the open orders of `flows` placed in `[start, end)` with today's rules and mapping tables (their
    verdicts, exceptions and target lines only: orders outside the window keep theirs), then record the
    submissions now due for them, sending nothing: new rows `pending` (`shadow` for a flow in shadow mode), held
    rows ready again armed, every other row left as it is. Returns `released_per_flow`."""
    staged = db.read(f"SELECT * FROM {SCHEMA}.orders WHERE status = 'open'")
    if staged.is_empty():
        return pl.DataFrame(schema=PER_FLOW_SCHEMA)
    routes = routing.order_routes(staged, config).filter(pl.col("flow").is_in(flows))
    window = in_window(staged, start, end).join(routes.select("order_key"), on="order_key", how="semi")
    keys = window["order_key"].to_list()
    if not keys:
        return pl.DataFrame(schema=PER_FLOW_SCHEMA)
    lines = db.read(
        f"SELECT * FROM {SCHEMA}.order_lines WHERE {db.any_of('order_key', 'keys')}",
        {"keys": keys},
    )
    now = now_utc()
    results = validate_targets(db, config, window, lines, exp_dir, now, None, log)
    _, validated = record_validation(db, results, now)
    all_intents, all_before, all_after = [], [], []
    for target in sorted({target_of(f) for f in flows}):
        chosen = [f for f in flows_to(config, target) if f in flows]
        intents = intents_for(db, config, target).filter(pl.col("flow").is_in(chosen))
        intents = intents.filter(pl.col("order_key").is_in(keys))
        before = _statuses(db, intents["idempotency_key"].to_list())
        record_ready(db, config, intents, chosen)
        all_intents.append(intents.select("idempotency_key", "flow"))
        all_before.append(before)
        all_after.append(_statuses(db, intents["idempotency_key"].to_list()))
    frames = [
        pl.concat(f) if f else pl.DataFrame(schema={"idempotency_key": pl.String, c: pl.String})
        for f, c in ((all_intents, "flow"), (all_before, "status"), (all_after, "status"))
    ]
    return released_per_flow(validated.select("order_key", "flow", "ready"), *frames)
