"""Staging assets: each system's raw tables -> canonical `orders` and `order_lines`."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from fulfil_assets.ledger import now_utc
from fulfil_assets.stage.linnworks import stage_linnworks
from resources.warehouse import Warehouse, WarehouseDb

RAW = "raw_linnworks"


def _raw(db: WarehouseDb, table: str) -> pl.DataFrame:
    return db.read(f"SELECT * FROM {RAW}.{table}") if db.table_exists(table, RAW) else pl.DataFrame()


@dg.multi_asset(
    group_name="stage",
    specs=[
        dg.AssetSpec(
            "orders",
            deps=[dg.AssetKey([RAW, "open_orders"]), dg.AssetKey([RAW, "processed_orders"])],
            description="Canonical orders from every OMS: one row per order, keyed `<system>:<id>`, with "
            "the ship-to address, chosen shipping method, paid flag and status.",
        ),
        dg.AssetSpec(
            "order_lines",
            deps=[dg.AssetKey([RAW, "open_orders"])],
            description="Canonical order lines: SKU, quantity and price per line.",
        ),
    ],
    op_tags={"fulfil/warehouse": "write"},
)
def staged_orders(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Iterator[dg.MaterializeResult]:
    """Stage Linnworks' raw tables into the canonical tables (rows are upserted per order, so orders that
    left the open set keep their history with their new status)."""
    db = warehouse.get_db()
    orders, lines = stage_linnworks(
        _raw(db, "open_orders"), _raw(db, "open_orders__items"), _raw(db, "processed_orders")
    )
    orders = orders.with_columns(pl.lit(now_utc()).alias("staged_at"))
    # Raw tables hold every order ever seen (merged), so staging rebuilds this system's rows whole.
    db.write("orders", orders, mode="replace", replace_where="source_system = 'linnworks'")
    db.write("order_lines", lines, mode="replace", replace_where="order_key LIKE 'linnworks:%'")
    counts = dict(orders.group_by("status").len().iter_rows())
    yield dg.MaterializeResult(
        asset_key="orders",
        metadata={
            "dagster/row_count": orders.height,
            "by_status": dg.MetadataValue.json(counts),
            "paid_open": int(orders.filter(pl.col("paid") & (pl.col("status") == "open")).height),
        },
    )
    yield dg.MaterializeResult(
        asset_key="order_lines",
        metadata={"dagster/row_count": lines.height, "units": int(lines["quantity"].sum() or 0)},
    )
