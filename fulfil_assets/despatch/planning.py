"""From a warehouse's despatch lines to the tracking posts each order's own system is due (any WMS)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from fulfil_assets import effects
from fulfil_assets.despatch.tracking import complete_orders, parcel_fulfilments, short_shipped, tracking_intents
from fulfil_assets.ledger import open_exceptions
from resources.warehouse import SCHEMA, WarehouseDb


def storefront_parcels(db: WarehouseDb, despatched: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Shopify fulfilments of the parcels of Linnworks orders (`keys`) that fulfil created from Shopify orders:
    the Linnworks order id is what `Orders/CreateOrders` answered, kept as the submission's `target_ref`."""
    created = db.read(
        f"SELECT s.order_key AS storefront_key, o.source_order_id, s.flow, s.target_ref "
        f"FROM {SCHEMA}.wms_submissions s JOIN {SCHEMA}.orders o USING (order_key) "
        "WHERE s.wms = 'linnworks' AND s.target_ref IS NOT NULL",
        schema={"storefront_key": pl.String, "source_order_id": pl.String, "flow": pl.String, "target_ref": pl.String},
    )
    links = created.with_columns(pl.format("linnworks:{}", "target_ref").alias("order_key")).filter(
        pl.col("order_key").is_in(keys)
    )
    if links.is_empty():
        return parcel_fulfilments(despatched.clear(), links, pl.DataFrame())  # no rows, the ledger's columns
    lines = db.read(
        f"SELECT w.order_key AS storefront_key, w.sku, l.source_line_id, w.quantity FROM {SCHEMA}.wms_order_lines w "
        f"JOIN {SCHEMA}.order_lines l ON l.order_key = w.order_key AND l.line_no = w.source_line_no "
        f"WHERE w.wms = 'linnworks' AND {db.any_of('w.order_key', 'keys')}",
        {"keys": links["storefront_key"].to_list()},
        schema={"storefront_key": pl.String, "sku": pl.String, "source_line_id": pl.String, "quantity": pl.Int64},
    )
    return parcel_fulfilments(despatched, links.drop("target_ref"), lines)


def plan_tracking(
    db: WarehouseDb, wms: str, despatched: pl.DataFrame, held: pl.DataFrame, source: str, now: datetime,
    flows: dict[str, bool],
) -> dict[str, int]:  # fmt: skip
    """Plan the tracking posts for the orders in `despatched` (rows just taken in from `source`, a file or an
    API read), counting every despatch of each order so far. Orders in `held` (their despatch did not add up)
    wait for the warehouse owner; a despatch of an order the customer cancelled raises `CANCEL_TOO_LATE`; a line
    shipped short raises `DESPATCH_SHORT`, and neither is posted as shipped. Orders complete at the warehouse
    turn `despatched` in `wms_submissions`. Each flow's posts are shadow or live as the flow is."""
    touched = despatched.select("order_key").drop_nulls().unique()
    cancelled = db.read(
        f"SELECT order_key, order_ref, updated_at FROM {SCHEMA}.orders WHERE status = 'cancelled'",
        schema={"order_key": pl.String, "order_ref": pl.String, "updated_at": pl.Datetime("us", "UTC")},
    ).join(touched, on="order_key", how="semi")
    open_exceptions(
        db,
        cancelled.select(
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
        ),
        "despatch_after_cancel",
        now,
    )
    affected = touched.join(held.select("order_key"), on="order_key", how="anti").join(
        cancelled.select("order_key"), on="order_key", how="anti"
    )
    keys = affected["order_key"].to_list()
    if not keys:
        return {"tracking_posts": 0, "short_shipped": 0}
    chosen = {"keys": keys}
    all_rows = db.read(
        f"SELECT * FROM {SCHEMA}.despatches WHERE wms = :wms AND {db.any_of('order_key', 'keys')}",
        {"wms": wms, **chosen},
    )
    short = short_shipped(all_rows)
    open_exceptions(db, short, "despatch_short", now)
    owners = db.read(
        f"SELECT s.order_key, o.source_system AS oms, o.source_order_id, "
        f"COALESCE(s.flow, o.source_system || '_' || s.wms) AS flow FROM {SCHEMA}.wms_submissions s "
        f"JOIN {SCHEMA}.orders o USING (order_key) WHERE s.wms = :wms AND {db.any_of('s.order_key', 'keys')}",
        {"wms": wms, **chosen},
    )
    lines = db.read(
        f"SELECT order_key, wms_line_no AS line_no, sku, quantity FROM {SCHEMA}.wms_order_lines "
        f"WHERE wms = :wms AND {db.any_of('order_key', 'keys')}",
        {"wms": wms, **chosen},
    )
    source_lines = db.read(
        f"SELECT w.order_key, w.wms_line_no, l.source_line_id, l.ship_to_id, l.quantity AS source_quantity, "
        f"w.quantity AS wms_quantity FROM {SCHEMA}.wms_order_lines w "
        f"JOIN {SCHEMA}.order_lines l ON l.order_key = w.order_key AND l.line_no = w.source_line_no "
        f"WHERE w.wms = :wms AND {db.any_of('w.order_key', 'keys')}",
        {"wms": wms, **chosen},
        schema={
            "order_key": pl.String,
            "wms_line_no": pl.Int32,
            "source_line_id": pl.String,
            "ship_to_id": pl.String,
            "source_quantity": pl.Int64,
            "wms_quantity": pl.Int64,
        },
    )
    intents = pl.concat(
        [tracking_intents(all_rows, lines, owners, source_lines), storefront_parcels(db, all_rows, keys)]
    )
    for flow in intents["flow"].unique().to_list():
        effects.intend(db, "tracking_posts", intents.filter(pl.col("flow") == flow), shadow=flows.get(flow, False))
    done = complete_orders(all_rows, lines)["order_key"].to_list()
    effects.report(db, "wms_submissions", [f"{wms}:order:{k}" for k in done], effects.DESPATCHED, confirmed=True)
    return {"tracking_posts": intents.height, "short_shipped": short.height}
