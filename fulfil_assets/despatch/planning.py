"""From a warehouse's despatch lines to the tracking posts each order's own system is due (any WMS), in one
direction: `read_context` reads what the orders concerned need from the warehouse once, `plan_tracking` decides
(pure polars), `record_plan` writes the decisions. Whistl's files (`intake.py`) and Peoplevox's despatch lines
(`stage/assets.py`) both come this way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from fulfil_assets import effects
from fulfil_assets.despatch.tracking import complete_orders, parcel_fulfilments, short_shipped, tracking_intents
from fulfil_assets.ledger import open_exceptions
from fulfil_assets.whistl_formats import DESPATCH_SCHEMA
from resources.warehouse import SCHEMA, WarehouseDb

DESPATCH_KEY = ["wms", "despatch_ref", "line_no", "parcel_no"]
# Each line sent to a warehouse (`w`) beside its line in the order system (`l`).
WITH_SOURCE_LINES = (
    f"{SCHEMA}.wms_order_lines w JOIN {SCHEMA}.order_lines l "
    "ON l.order_key = w.order_key AND l.line_no = w.source_line_no"
)


@dataclass(frozen=True)
class PlanningContext:
    """What planning the despatches of some orders at one warehouse needs from the warehouse, read at once."""

    earlier: pl.DataFrame  # their despatch rows taken in before
    lines: pl.DataFrame  # order_key, line_no, sku, quantity: the lines as the warehouse holds them
    cancelled: pl.DataFrame  # order_key, order_ref, updated_at: those the customer cancelled in the order system
    owners: pl.DataFrame  # order_key, oms, source_order_id, flow: whose order each is
    source_lines: pl.DataFrame  # each warehouse line's line in the order system (id, ship-to, quantities)
    storefront_links: pl.DataFrame  # Linnworks orders fulfil created from storefront orders: order_key -> storefront
    storefront_lines: pl.DataFrame  # those storefront orders' lines as they were created in Linnworks
    fulfillment_orders: pl.DataFrame  # the fulfillment order lines of those that are Shopify's, as last read


def read_context(db: WarehouseDb, wms: str, keys: list[str]) -> PlanningContext:
    """Everything `plan_tracking` needs for the orders `keys` at `wms`, read once (only these orders: the tables
    grow with every despatch)."""
    chosen = {"wms": wms, "keys": keys}
    created = "'linnworks:' || s.target_ref"  # the Linnworks order fulfil created from a storefront order
    links = db.read(
        f"SELECT s.order_key AS storefront_key, o.source_order_id, s.flow, {created} AS order_key "
        f"FROM {SCHEMA}.wms_submissions s JOIN {SCHEMA}.orders o USING (order_key) "
        f"WHERE s.wms = 'linnworks' AND s.target_ref IS NOT NULL AND {db.any_of(created, 'keys')}",
        {"keys": keys},
        schema={"storefront_key": pl.String, "source_order_id": pl.String, "flow": pl.String, "order_key": pl.String},
    )
    shopify_ids = links.filter(pl.col("storefront_key").str.starts_with("shopify:"))["source_order_id"].to_list()
    return PlanningContext(
        earlier=db.read(
            f"SELECT * FROM {SCHEMA}.despatches WHERE wms = :wms AND {db.any_of('order_key', 'keys')}",
            chosen,
            schema={**DESPATCH_SCHEMA, "order_key": pl.String},
        ),
        lines=db.read(
            f"SELECT order_key, wms_line_no AS line_no, sku, quantity FROM {SCHEMA}.wms_order_lines "
            f"WHERE wms = :wms AND {db.any_of('order_key', 'keys')}",
            chosen,
            schema={"order_key": pl.String, "line_no": pl.Int32, "sku": pl.String, "quantity": pl.Int64},
        ),
        cancelled=db.read(
            f"SELECT order_key, order_ref, updated_at FROM {SCHEMA}.orders "
            f"WHERE status = 'cancelled' AND {db.any_of('order_key', 'keys')}",
            {"keys": keys},
            schema={"order_key": pl.String, "order_ref": pl.String, "updated_at": pl.Datetime("us", "UTC")},
        ),
        owners=db.read(
            f"SELECT s.order_key, o.source_system AS oms, o.source_order_id, "
            f"COALESCE(s.flow, o.source_system || '_' || s.wms) AS flow FROM {SCHEMA}.wms_submissions s "
            f"JOIN {SCHEMA}.orders o USING (order_key) WHERE s.wms = :wms AND {db.any_of('s.order_key', 'keys')}",
            chosen,
            schema={"order_key": pl.String, "oms": pl.String, "source_order_id": pl.String, "flow": pl.String},
        ),
        source_lines=db.read(
            f"SELECT w.order_key, w.wms_line_no, l.source_line_id, l.ship_to_id, l.quantity AS source_quantity, "
            f"w.quantity AS wms_quantity FROM {WITH_SOURCE_LINES} "
            f"WHERE w.wms = :wms AND {db.any_of('w.order_key', 'keys')}",
            chosen,
            schema={
                "order_key": pl.String,
                "wms_line_no": pl.Int32,
                "source_line_id": pl.String,
                "ship_to_id": pl.String,
                "source_quantity": pl.Int64,
                "wms_quantity": pl.Int64,
            },
        ),
        storefront_links=links,
        storefront_lines=storefront_lines(db, links["storefront_key"].to_list()),
        fulfillment_orders=fulfillment_order_lines(db, shopify_ids),
    )


def storefront_lines(db: WarehouseDb, keys: list[str]) -> pl.DataFrame:
    """The lines of these storefront orders as fulfil created them in Linnworks: storefront_key, sku,
    source_line_id (the storefront's line id), quantity."""
    return db.read(
        "SELECT w.order_key AS storefront_key, w.sku, l.source_line_id, w.quantity "
        f"FROM {WITH_SOURCE_LINES} WHERE w.wms = 'linnworks' AND {db.any_of('w.order_key', 'keys')}",
        {"keys": keys},
        schema={"storefront_key": pl.String, "sku": pl.String, "source_line_id": pl.String, "quantity": pl.Int64},
    )


def fulfillment_order_lines(db: WarehouseDb, order_ids: list[str]) -> pl.DataFrame:
    """The fulfillment order lines of these Shopify orders as the order sync last read them (its raw tables):
    source_order_id, fulfillment_order_id, id, line_item_id. Empty before the first Shopify sync."""
    schema = {"source_order_id": pl.String, "fulfillment_order_id": pl.Int64, "id": pl.Int64, "line_item_id": pl.String}
    raw = "raw_shopify.fulfillment_orders"
    ids = [int(i) for i in order_ids if str(i).isdigit()]
    if not ids or not db.table_exists("fulfillment_orders__line_items", "raw_shopify"):
        return pl.DataFrame(schema=schema)
    return db.read(
        "SELECT f.order_id AS source_order_id, f.id AS fulfillment_order_id, l.id, l.line_item_id "
        f"FROM {raw} f JOIN {raw}__line_items l ON l._dlt_parent_id = f._dlt_id "
        f"WHERE {db.any_of('f.order_id', 'ids')} ORDER BY f.id, l.id",
        {"ids": ids},
        schema=schema,
    )


@dataclass(frozen=True)
class TrackingPlan:
    """What a warehouse's despatches call for: exceptions per rule, tracking posts, orders now complete."""

    exceptions: dict[str, pl.DataFrame]  # rule -> order_key, reason_code, detail
    intents: pl.DataFrame  # `tracking_posts` ledger rows (a `flow` column)
    complete: list[str]  # order keys despatched in full at the warehouse
    short_shipped: int


def plan_tracking(
    wms: str, despatched: pl.DataFrame, held: pl.DataFrame, source: str, ctx: PlanningContext
) -> TrackingPlan:
    """The tracking posts for the orders in `despatched` (rows just taken in from `source`, a file or an API read),
    counting every despatch of each order so far (`ctx.earlier` and these). Orders in `held` (their despatch did
    not add up) wait for the warehouse owner; a despatch of an order the customer cancelled raises
    `CANCEL_TOO_LATE`; a line shipped short raises `DESPATCH_SHORT`, and neither is posted as shipped."""
    touched = despatched.select("order_key").drop_nulls().unique()
    cancelled = ctx.cancelled.join(touched, on="order_key", how="semi")
    too_late = cancelled.select(
        "order_key",
        pl.lit("CANCEL_TOO_LATE").alias("reason_code"),
        pl.format(
            "{} despatched order {} ({}) although the customer cancelled it at {}: stop the parcel with the "
            "carrier or arrange a return",
            pl.lit(wms.capitalize()),
            "order_ref",
            pl.lit(source),
            pl.col("updated_at").cast(pl.String),
        ).alias("detail"),
    )
    affected = touched.join(held.select("order_key"), on="order_key", how="anti").join(
        cancelled.select("order_key"), on="order_key", how="anti"
    )
    if affected.is_empty():
        return TrackingPlan({"despatch_after_cancel": too_late}, pl.DataFrame(), [], 0)
    keys = affected["order_key"].implode()
    earlier = ctx.earlier.select(despatched.columns) if ctx.earlier.height else despatched.clear()
    every = (
        pl.concat([earlier, despatched], how="vertical_relaxed")
        .unique(DESPATCH_KEY, keep="last", maintain_order=True)
        .filter(pl.col("order_key").is_in(keys))
    )
    short = short_shipped(every)
    links = ctx.storefront_links.filter(pl.col("order_key").is_in(keys))
    storefront = parcel_fulfilments(
        every if links.height else every.clear(), links, ctx.storefront_lines, ctx.fulfillment_orders
    )
    intents = pl.concat([tracking_intents(every, ctx.lines, ctx.owners, ctx.source_lines), storefront])
    done = complete_orders(every, ctx.lines)["order_key"].to_list()
    return TrackingPlan({"despatch_after_cancel": too_late, "despatch_short": short}, intents, done, short.height)


def record_plan(db: WarehouseDb, wms: str, plan: TrackingPlan, now: datetime, flows: dict[str, bool]) -> None:
    """Write a plan: its exceptions, its tracking posts (each flow's shadow or live as the flow is), and the
    orders complete at the warehouse turning `despatched` in `wms_submissions`."""
    for rule, problems in plan.exceptions.items():
        open_exceptions(db, problems, rule, now)
    if plan.intents.height:
        for flow in plan.intents["flow"].unique().to_list():
            rows = plan.intents.filter(pl.col("flow") == flow)
            effects.intend(db, "tracking_posts", rows, shadow=flows.get(flow, False))
    effects.report(
        db, "wms_submissions", [f"{wms}:order:{k}" for k in plan.complete], effects.DESPATCHED, confirmed=True
    )
