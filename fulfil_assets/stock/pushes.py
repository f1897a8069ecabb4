"""Stock levels to the order systems, through the `stock_pushes` ledger: which levels are due (pure polars) and
one sender per order system, each batching to its API's maximum.

Every push is an absolute level (Cin7 Core's stock adjustment line carries the level to set), so repeating an
unconfirmed one cannot double anything. Before it is repeated the order system is still asked: the run has just
read its levels (`oms_stock`), and an unconfirmed push whose level the order system already shows is confirmed
from that reading instead of being sent again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import polars as pl

from fulfil_assets import effects
from fulfil_assets.effects import Outcome
from resources.bigcommerce import BigCommerceClient
from resources.cin7 import Cin7Client
from resources.http import DataError, TransientError
from resources.limits import STOCK_BATCH_MAXIMUM
from resources.linnworks import LinnworksClient
from resources.shopify import ShopifyClient

TABLE = "stock_pushes"
LEDGER_SCHEMA = {"idempotency_key": pl.String, "status": pl.String, "location": pl.String, "sku": pl.String}
INTENT_SCHEMA = {
    "idempotency_key": pl.String,
    "order_key": pl.String,
    "flow": pl.String,
    "target": pl.String,
    "oms": pl.String,
    "location": pl.String,
    "sku": pl.String,
    "level": pl.Int64,
    "payload": pl.String,
}


def _generation() -> pl.Expr:
    return pl.col("idempotency_key").str.split(":").list.last().cast(pl.Int64)


def last_confirmed(ledger: pl.DataFrame) -> pl.DataFrame:
    """Per location and SKU, the level of the newest push the order system confirmed."""
    sent = ledger.filter(pl.col("status") == effects.SENT).with_columns(_generation().alias("gen"))
    return sent.sort("gen").group_by("location", "sku").agg(pl.col("level").last())


def push_intents(due: pl.DataFrame, ledger: pl.DataFrame, flow: str, oms: str) -> tuple[pl.DataFrame, list[str]]:
    """Ledger rows for the levels `due` (`stock_deltas` rows to push, with `payload`), keyed
    `<flow>:stock:<location>:<sku>:<n>`: the newest row of a SKU is reused while it was never attempted, or
    carries the same level and is not confirmed yet; otherwise a new generation is made and the older rows still
    due are returned, to be superseded (a newer absolute level makes them moot)."""
    if due.is_empty():
        return pl.DataFrame(schema=INTENT_SCHEMA), []
    latest = (
        ledger.with_columns(_generation().alias("gen"))
        .sort("gen")
        .group_by("location", "sku")
        .agg(pl.col("gen").last(), pl.col("status").last(), pl.col("level").last().alias("old_level"))
    )
    rows = due.join(latest, on=["location", "sku"], how="left")
    # A confirmed push of the same level is due again only because the order system drifted from it since: a new
    # generation, not the row already sent.
    reuse = pl.col("gen").is_not_null() & (
        pl.col("status").is_in(effects.NEVER_ATTEMPTED)
        | ((pl.col("old_level") == pl.col("ats")) & (pl.col("status") != effects.SENT))
    )
    rows = rows.with_columns(pl.when(reuse).then(pl.col("gen")).otherwise(pl.col("gen").fill_null(0) + 1).alias("gen"))
    intents = rows.select(
        pl.format("{}:stock:{}:{}:{}", pl.lit(flow), "location", "sku", "gen").alias("idempotency_key"),
        pl.format("{}:{}:{}", pl.lit(oms), "location", "sku").alias("order_key"),
        pl.lit(flow).alias("flow"),
        pl.lit(oms).alias("target"),
        pl.lit(oms).alias("oms"),
        "location",
        "sku",
        pl.col("ats").alias("level"),
        "payload",
    )
    new_subjects = rows.filter(~reuse.fill_null(False)).select("location", "sku")
    older = (
        ledger.filter(pl.col("status").is_in(effects.SENDABLE))
        .join(new_subjects, on=["location", "sku"], how="semi")
        .join(intents.select("idempotency_key"), on="idempotency_key", how="anti")
    )
    return intents.cast(INTENT_SCHEMA), older["idempotency_key"].to_list()  # type: ignore[arg-type]


def payloads(due: pl.DataFrame, oms: str, items: pl.DataFrame | None = None) -> pl.DataFrame:
    """`due` with the `payload` each order system takes for one level (Shopify: by inventory item, from
    `items`: `sku`, `inventory_item_id`, a SKU without one left out; BigCommerce: by SKU, or by product for a
    product tracked as a whole, from `items`: `sku`, `product_id`, `inventory_tracking`, `product_sku`)."""
    if oms == "linnworks":
        body = pl.struct(
            pl.col("sku").alias("SKU"), pl.col("location").alias("LocationId"), pl.col("ats").alias("Level")
        )
    elif oms == "cin7":
        reason = pl.format(
            "fulfil: warehouse {} available, {} on open orders not yet at the warehouse, buffer {}",
            "wms_available",
            "open_unsent",
            "buffer",
        )
        body = pl.struct(
            pl.col("sku").alias("SKU"),
            pl.col("location").alias("Location"),
            pl.col("ats").alias("Quantity"),
            reason.alias("Comments"),
        )
    elif oms == "bigcommerce":
        # A product tracked as a whole keeps one figure, set by its id (its own SKU's level); its variants'
        # SKUs have none of their own. Every other item is set by SKU.
        assert items is not None
        due = due.join(items, on="sku", how="left").filter(
            (pl.col("inventory_tracking").fill_null("variant") != "product") | (pl.col("sku") == pl.col("product_sku"))
        )
        location = pl.col("location").cast(pl.Int64).alias("location_id")
        by_product = pl.struct(location, pl.col("product_id").cast(pl.Int64), pl.col("ats").alias("quantity"))
        by_sku = pl.struct(location, "sku", pl.col("ats").alias("quantity"))
        body = (
            pl.when(pl.col("inventory_tracking") == "product")
            .then(by_product.struct.json_encode())
            .otherwise(by_sku.struct.json_encode())
        )
        return due.with_columns(body.alias("payload")).drop("product_id", "inventory_tracking", "product_sku")
    elif oms == "shopify":
        assert items is not None
        due = due.join(items.select("sku", pl.col("inventory_item_id").cast(pl.String)), on="sku", how="inner")
        body = pl.struct(
            pl.format("gid://shopify/InventoryItem/{}", "inventory_item_id").alias("inventoryItemId"),
            pl.format("gid://shopify/Location/{}", "location").alias("locationId"),
            pl.col("ats").alias("quantity"),
        )
    else:
        raise ValueError(f"no stock sender for {oms}")
    return due.with_columns(body.struct.json_encode().alias("payload"))


def _levels(rows: pl.DataFrame) -> list[dict]:
    return [json.loads(p) for p in rows["payload"]]


def _failure(exc: Exception) -> Outcome:
    if isinstance(exc, TransientError):
        status = effects.SENDING if exc.maybe_applied else effects.PENDING
        return Outcome(status, error=str(exc))
    return Outcome(effects.FAILED, error=str(exc))


class StockSender:
    """A `Target` for stock levels: batches of at most the order system's maximum, one call each."""

    oms = ""

    def __init__(self, client: Any, batch: int | None = None) -> None:
        self.client = client
        self.batch = min(batch or STOCK_BATCH_MAXIMUM[self.oms], STOCK_BATCH_MAXIMUM[self.oms])
        self.calls = 0
        self.observed: dict[tuple[str, str], int] = {}

    def observe(self, levels: pl.DataFrame) -> None:
        """What the order system showed this run (`location`, `sku`, `level`), for `holds`."""
        self.observed = {(loc, sku): lvl for loc, sku, lvl in levels.select("location", "sku", "level").iter_rows()}

    def batches(self, rows: pl.DataFrame) -> Iterable[pl.DataFrame]:
        """Full batches in ledger order."""
        return (rows.slice(i, self.batch) for i in range(0, rows.height, self.batch))

    def holds(self, rows: pl.DataFrame) -> dict[str, str]:
        """Unconfirmed pushes whose level the order system showed when this run read it."""
        return {
            key: f"{self.oms} shows {level} at {location} for {sku}"
            for key, location, sku, level in rows.select("idempotency_key", "location", "sku", "level").iter_rows()
            if self.observed.get((location, sku)) == level
        }

    def send(self, rows: pl.DataFrame) -> Iterator[tuple[list[str], Outcome]]:
        """One call for the batch; its outcome for every row (per row where the answer says so)."""
        keys = rows["idempotency_key"].to_list()
        self.calls += 1
        try:
            yield from self.call(rows, keys)
        except (TransientError, DataError) as exc:
            yield keys, _failure(exc)

    def call(self, rows: pl.DataFrame, keys: list[str]) -> Iterator[tuple[list[str], Outcome]]:
        """The order system's own call."""
        raise NotImplementedError


class LinnworksStock(StockSender):
    """`Stock/SetStockLevel` by SKU and location."""

    oms = "linnworks"
    client: LinnworksClient

    def call(self, rows: pl.DataFrame, keys: list[str]) -> Iterator[tuple[list[str], Outcome]]:
        """Set the levels; Linnworks answers each item's new level."""
        answer = self.client.set_stock_levels(_levels(rows), "fulfil stock sync")
        yield keys, Outcome(effects.SENT, result=f"{len(answer)} levels set")


class Cin7Stock(StockSender):
    """One completed stock adjustment per batch, each line carrying the level and why."""

    oms = "cin7"
    client: Cin7Client

    def __init__(self, client: Cin7Client, now: datetime, batch: int | None = None) -> None:
        super().__init__(client, batch)
        self.now = now

    def call(self, rows: pl.DataFrame, keys: list[str]) -> Iterator[tuple[list[str], Outcome]]:
        """POST the adjustment; its `TaskID` is the confirmation."""
        body = {
            "EffectiveDate": self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Status": "COMPLETED",
            "Reference": f"fulfil stock sync {self.now:%Y-%m-%d %H:%M}",
            "Lines": _levels(rows),
        }
        answer = self.client.adjust_stock(body)
        yield keys, Outcome(effects.SENT, result=f"TaskID {answer.get('TaskID')}")


class BigCommerceStock(StockSender):
    """v3 absolute inventory adjustments, 2,000 items a call."""

    oms = "bigcommerce"
    client: BigCommerceClient

    def call(self, rows: pl.DataFrame, keys: list[str]) -> Iterator[tuple[list[str], Outcome]]:
        """PUT the levels; the `transaction_id` is the confirmation."""
        answer = self.client.set_inventory(_levels(rows), "fulfil stock sync")
        yield keys, Outcome(effects.SENT, result=f"transaction {answer.get('transaction_id')}")


class ShopifyStock(StockSender):
    """GraphQL `inventorySetQuantities`, 250 a call, paced by the cost the answers report."""

    oms = "shopify"
    client: ShopifyClient

    def call(self, rows: pl.DataFrame, keys: list[str]) -> Iterator[tuple[list[str], Outcome]]:
        """Set the levels; a `userErrors` entry refuses its own quantity (by index), the rest are set."""
        answer = self.client.set_quantities(_levels(rows))
        refused: dict[int, str] = {}
        for error in answer.get("userErrors") or []:
            field = error.get("field") or []
            index = int(field[2]) if len(field) > 2 and str(field[2]).isdigit() else -1
            message = f"Shopify {error.get('code')}: {error.get('message')}"
            if index < 0:  # about the whole call
                yield keys, Outcome(effects.FAILED, error=message)
                return
            refused[index] = message
        for i, key in enumerate(keys):
            if i in refused:
                yield [key], Outcome(effects.FAILED, error=refused[i])
        fine = [k for i, k in enumerate(keys) if i not in refused]
        if fine:
            yield fine, Outcome(effects.SENT, result="set")
