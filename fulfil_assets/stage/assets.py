"""Staging assets: every configured system's raw tables -> canonical `orders`, `order_lines`, `oms_stock`,
`wms_stock` and (for Peoplevox) `despatches`. Each system's rows are rebuilt whole from its raw tables (which hold
every record ever seen, merged on the system's id), so orders that left the open set keep their history."""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from fulfil_assets.config import FulfilConfig
from fulfil_assets.ledger import now_utc
from fulfil_assets.stage.cin7 import stage_cin7
from fulfil_assets.stage.despatches import peoplevox_despatches
from fulfil_assets.stage.linnworks import stage_linnworks
from fulfil_assets.stage.stock import (
    bigcommerce_stock,
    cin7_stock,
    linnworks_stock,
    peoplevox_stock,
    shopify_stock,
    whistl_stock,
)
from fulfil_assets.stage.storefronts import stage_bigcommerce, stage_shopify
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

WRITE_TAGS = {"fulfil/warehouse": "write"}


@dataclass(frozen=True)
class Staging:
    """How one system's raw tables become canonical rows: the raw assets it depends on, the raw tables its pure
    staging function takes (in order), and that function."""

    deps: Sequence[str]
    tables: Sequence[str]
    stage: Callable[..., Any]


ORDER_STAGING = {
    "linnworks": Staging(
        ("open_orders", "processed_orders"), ("open_orders", "open_orders__items", "processed_orders"), stage_linnworks
    ),
    "cin7": Staging(("sale_list", "sales"), ("sales", "sales__order__lines", "sale_list"), stage_cin7),
    "shopify": Staging(("orders",), ("orders", "orders__line_items", "orders__shipping_lines"), stage_shopify),
    "bigcommerce": Staging(
        ("orders", "order_products", "order_shipping_addresses"),
        ("orders", "order_products", "order_shipping_addresses"),
        stage_bigcommerce,
    ),
}
OMS_STOCK_STAGING = {
    "linnworks": Staging(("stock_items",), ("stock_items__stock_levels",), linnworks_stock),
    "cin7": Staging(("product_availability",), ("product_availability",), cin7_stock),
    "shopify": Staging(("inventory_levels", "products"), ("inventory_levels", "products__variants"), shopify_stock),
    "bigcommerce": Staging(("inventory_levels",), ("inventory_levels",), bigcommerce_stock),
}


def raw_table(db: WarehouseDb, system: str, table: str) -> pl.DataFrame:
    """A raw table, or an empty frame when the system has not loaded it yet (dlt creates tables on first data)."""
    schema = f"raw_{system}"
    return db.read(f"SELECT * FROM {schema}.{table}") if db.table_exists(table, schema) else pl.DataFrame()


def _keys(system: str, staging: Staging) -> list[dg.AssetKey]:
    return [dg.AssetKey([f"raw_{system}", dep]) for dep in staging.deps]


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """Staging assets for the systems fulfil.yaml configures."""
    systems = config.systems
    oms = [name for name in ORDER_STAGING if getattr(systems, name) is not None]
    deps = [key for name in oms for key in _keys(name, ORDER_STAGING[name])]

    @dg.multi_asset(
        group_name="stage",
        specs=[
            dg.AssetSpec(
                "orders",
                deps=deps,
                description="Canonical orders from every OMS: one row per order, keyed `<system>:<id>`, with "
                "the ship-to address, chosen shipping method, paid flag and status.",
            ),
            dg.AssetSpec("order_lines", deps=deps, description="Canonical order lines: SKU, quantity and price."),
        ],
        op_tags=WRITE_TAGS,
    )
    def staged_orders(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Iterator[dg.MaterializeResult]:
        """Stage each configured OMS's raw orders into the canonical tables, one system's rows at a time."""
        db = warehouse.get_db()
        counts: dict[str, int] = {}
        all_orders, all_lines = [], []
        for name in oms:
            staging = ORDER_STAGING[name]
            orders, lines = staging.stage(*(raw_table(db, name, t) for t in staging.tables))
            orders = orders.with_columns(pl.lit(now_utc()).alias("staged_at"))
            db.write("orders", orders, mode="replace", replace_where=f"source_system = '{name}'")
            db.write("order_lines", lines, mode="replace", replace_where=f"order_key LIKE '{name}:%'")
            counts[name] = orders.height
            all_orders.append(orders.select("status", "paid"))
            all_lines.append(lines.select("quantity"))
        orders = pl.concat(all_orders) if all_orders else pl.DataFrame(schema={"status": pl.String, "paid": pl.Boolean})
        lines = pl.concat(all_lines) if all_lines else pl.DataFrame(schema={"quantity": pl.Int64})
        context.log.info(f"staged orders per system: {counts}")
        yield dg.MaterializeResult(
            asset_key="orders",
            metadata={
                "dagster/row_count": orders.height,
                "by_system": dg.MetadataValue.json(counts),
                "by_status": dg.MetadataValue.json(dict(orders.group_by("status").len().iter_rows())),
                "paid_open": int(orders.filter(pl.col("paid") & (pl.col("status") == "open")).height),
            },
        )
        yield dg.MaterializeResult(
            asset_key="order_lines",
            metadata={"dagster/row_count": lines.height, "units": int(lines["quantity"].sum() or 0)},
        )

    stock_systems = [name for name in OMS_STOCK_STAGING if getattr(systems, name) is not None]

    @dg.asset(
        group_name="stage",
        deps=[key for name in stock_systems for key in _keys(name, OMS_STOCK_STAGING[name])],
        op_tags=WRITE_TAGS,
    )
    def oms_stock(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """What each order system shows as stock, per SKU and location (the OMS side of stock reconciliation)."""
        db = warehouse.get_db()
        levels: dict[str, int] = {}
        for name in stock_systems:
            staging = OMS_STOCK_STAGING[name]
            frame = staging.stage(*(raw_table(db, name, t) for t in staging.tables), now_utc())
            db.write("oms_stock", frame, mode="replace", replace_where=f"oms = '{name}'")
            levels[name] = frame.height
        return dg.MaterializeResult(
            metadata={"dagster/row_count": sum(levels.values()), "by_system": dg.MetadataValue.json(levels)}
        )

    wms_deps = []
    if systems.whistl is not None:
        wms_deps.append(dg.AssetKey(["raw_whistl", "stock_snapshots"]))
    if systems.peoplevox is not None:
        wms_deps.append(dg.AssetKey(["raw_peoplevox", "available"]))

    @dg.asset(group_name="stage", deps=wms_deps, op_tags=WRITE_TAGS, kinds={"polars"})
    def wms_stock(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """What each warehouse physically holds (and so its item catalogue): Whistl's newest full snapshot file
        (unusable rows quarantined once per file; a file with no usable row leaves the last snapshot in place)
        and Peoplevox's `Available` report."""
        db = warehouse.get_db()
        metadata: dict[str, Any] = {}
        if systems.whistl is not None:
            good, bad = whistl_stock(raw_table(db, "whistl", "stock_snapshots"))
            if good.height or bad.height:
                snapshot = (good["source_file"] if good.height else bad["source_file"])[0]
                if good.height:
                    db.write("wms_stock", good, mode="replace", replace_where="wms = 'whistl'")
                else:  # not one usable row: keep the last good snapshot rather than empty the catalogue
                    context.log.error(f"{snapshot}: no usable stock row; keeping the previous snapshot")
                seen = db.read(
                    f"SELECT COUNT(*) AS n FROM {SCHEMA}.quarantined_rows "
                    "WHERE source = 'whistl_stock' AND source_file = :f",
                    {"f": snapshot},
                )["n"][0]
                if bad.height and not seen:
                    db.write("quarantined_rows", bad.with_columns(pl.lit(now_utc()).alias("quarantined_at")))
                    context.log.warning(f"{snapshot}: {bad.height} stock rows quarantined")
                metadata |= {
                    "whistl_snapshot": snapshot if good.height else f"{snapshot} (unusable; previous kept)",
                    "whistl_skus": good.height,
                    "whistl_units_available": int(good["available"].sum() or 0),
                    "whistl_rows_quarantined": bad.height,
                }
        if systems.peoplevox is not None:
            frame = peoplevox_stock(raw_table(db, "peoplevox", "available"), now_utc())
            db.write("wms_stock", frame, mode="replace", replace_where="wms = 'peoplevox'")
            metadata |= {
                "peoplevox_skus": frame.height,
                "peoplevox_units_available": int(frame["available"].sum() or 0),
            }
        return dg.MaterializeResult(metadata=metadata)

    assets: list[Any] = [staged_orders, oms_stock, wms_stock]
    if systems.peoplevox is not None:

        @dg.asset(
            group_name="stage",
            deps=[dg.AssetKey(["raw_peoplevox", "despatches"])],
            op_tags=WRITE_TAGS,
            kinds={"peoplevox"},
        )
        def peoplevox_despatch_lines(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
            """Peoplevox despatches as `despatches` rows (wms `peoplevox`), matched to the orders fulfil sent."""
            db = warehouse.get_db()
            sent = db.read(f"SELECT order_ref, order_key FROM {SCHEMA}.wms_submissions WHERE wms = 'peoplevox'")
            rows = peoplevox_despatches(raw_table(db, "peoplevox", "despatches"), sent)
            db.write("despatches", rows, mode="upsert", key=["wms", "despatch_ref", "line_no", "parcel_no"])
            return dg.MaterializeResult(
                metadata={
                    "dagster/row_count": rows.height,
                    "unmatched": int(rows["order_key"].is_null().sum()),
                    "units": int(rows["quantity"].sum() or 0),
                }
            )

        assets.append(peoplevox_despatch_lines)
    return dg.Definitions(assets=assets)
