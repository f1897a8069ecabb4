"""What every sender of orders shares: ready orders with their lines, and recording intents per flow."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from fulfil_assets import effects
from fulfil_assets.config import FulfilConfig, is_shadow
from resources.warehouse import WarehouseDb

PAYLOAD_SCHEMA = {"order_key": pl.String, "order_ref": pl.String, "flow": pl.String, "payload": pl.String}
# A ledger row as the senders intend it (`effects.intend` adds the rest).
INTENT_SCHEMA = {
    c: pl.String for c in ("idempotency_key", "order_key", "flow", "target", "wms", "order_ref", "payload")
}


def orders_with_items(ready: pl.DataFrame, lines: pl.DataFrame) -> Iterator[dict[str, Any]]:
    """Each ready order as a dict with its `items` (line_no, sku, quantity, unit_price) in line order; orders
    without lines are left out."""
    if ready.is_empty():
        return
    items = (
        lines.sort("order_key", "line_no")
        .group_by("order_key", maintain_order=True)
        .agg(pl.struct("line_no", "sku", "quantity", "unit_price").alias("items"))
    )
    yield from ready.join(items, on="order_key", how="inner").iter_rows(named=True)


def record_intents(
    db: WarehouseDb, config: FulfilConfig, table: str, intents: pl.DataFrame, flows: list[str]
) -> list[str]:
    """Record `intents` in `table` flow by flow (as `shadow` for a flow in shadow mode) and make the shadow rows
    of live flows due; returns the keys armed again (refused earlier, payload changed since)."""
    rearmed: list[str] = []
    for flow in flows:
        shadow = is_shadow(config, flow)
        rearmed += effects.intend(db, table, intents.filter(pl.col("flow") == flow), shadow=shadow)[1]
        if not shadow:
            effects.go_live(db, table, f"flow = '{flow}'")
    return rearmed
