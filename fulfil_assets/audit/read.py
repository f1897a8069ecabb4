"""The audit's reads: the staged and raw tables of the warehouse, checked by the same rules validation uses, and
the findings of `audit/findings.py` computed from them. It writes nothing and calls no system: what it reads was
ingested and staged by the audit job (or any earlier run)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from fulfil_assets import routing
from fulfil_assets.audit import findings
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, stock_config
from fulfil_assets.stock.assets import flow_available_to_sell
from fulfil_assets.validate.assets import validate_targets
from fulfil_assets.validate.mappings import load_bundles, load_service_codes, load_stock_locations, load_variant_skus
from resources.limits import LIMITS, SystemLimits
from resources.warehouse import SCHEMA, WarehouseDb


@dataclass
class Audit:
    """Every section of the audit as a frame, and what it covered."""

    generated_at: datetime
    days: float
    stale_days: float
    flows: list[str]
    orders_checked: int
    sections: dict[str, pl.DataFrame] = field(default_factory=dict)


def _read(db: WarehouseDb, sql: str, schema: dict[str, Any], table: str, where: str = SCHEMA) -> pl.DataFrame:
    """`sql`'s rows, or none of `schema` when the table was never written (a system not read yet)."""
    if not db.table_exists(table, where):
        return pl.DataFrame(schema=schema)
    return db.read(sql, schema=schema)


def storefront_variants(db: WarehouseDb) -> pl.DataFrame:
    """Shopify and BigCommerce variants as the catalogue lists them: `system, variant_id, product, sku`."""
    schema = {"system": pl.String, "variant_id": pl.String, "product": pl.String, "sku": pl.String}
    shopify = _read(
        db,
        "SELECT 'shopify' AS system, CAST(id AS TEXT) AS variant_id, CAST(product_id AS TEXT) AS product, sku "
        "FROM raw_shopify.products__variants",
        schema,
        "products__variants",
        "raw_shopify",
    )
    bigcommerce = _read(
        db,
        "SELECT 'bigcommerce' AS system, CAST(variant_id AS TEXT) AS variant_id, CAST(product_id AS TEXT) AS product, "
        "sku FROM raw_bigcommerce.inventory_levels",
        schema,
        "inventory_levels",
        "raw_bigcommerce",
    )
    return pl.concat([shopify, bigcommerce]).unique(["system", "variant_id"]).sort("system", "variant_id")


def limits_for(config: FulfilConfig) -> dict[str, SystemLimits]:
    """Each system's limits as this deployment has them (a Shopify store's leak is its plan's)."""
    shopify = config.systems.shopify
    if shopify is None:
        return LIMITS
    return {**LIMITS, "shopify": replace(LIMITS["shopify"], calls_per_minute=shopify.leak_per_s * 60)}


def run_audit(
    db: WarehouseDb,
    config: FulfilConfig,
    exp_dir: Path,
    now: datetime,
    days: float = 30.0,
    stale_days: float = 7.0,
    log: Any = None,
) -> Audit:
    """Every section of the audit for the configured flows, over orders placed in the last `days`."""
    log = log or logging.getLogger("fulfil.audit")
    orders = db.read(f"SELECT * FROM {SCHEMA}.orders")
    lines = db.read(f"SELECT * FROM {SCHEMA}.order_lines")
    recent = orders.filter(pl.col("created_at") >= now - timedelta(days=days))
    results = validate_targets(db, config, recent, lines, exp_dir, now, None, log)
    columns = ["flow", "target", "order_key", "wms_sku", "shipping_method", "service_code"]
    checked = pl.concat([r.frame.with_columns(pl.lit(r.target).alias("target")).select(columns) for r in results])
    verdicts = pl.concat([r.verdicts.select("order_key", "rule", "passed", "reason_code") for r in results])
    refs = pl.concat([r.frame.select("order_key", "order_ref", "flow") for r in results]).unique("order_key")

    wms_stock = db.read(f"SELECT wms, location, sku, available FROM {SCHEMA}.wms_stock", schema={"available": pl.Int64})
    oms_stock = db.read(
        f"SELECT oms AS system, location, sku, level FROM {SCHEMA}.oms_stock", schema={"level": pl.Int64}
    )
    catalogues = pl.concat(
        [
            wms_stock.select(pl.col("wms").alias("system"), "sku"),
            oms_stock.filter(pl.col("system").is_in(routing.targets(config))).select("system", "sku"),
        ]
    ).unique()
    order_systems = sorted({FLOW_SYSTEMS[f][0] for f in config.flows})
    oms_skus = oms_stock.filter(pl.col("system").is_in(order_systems)).select("system", "sku").unique()
    bundles = load_bundles(exp_dir / "bundles.csv")
    service_map = load_service_codes(exp_dir / "service_codes.csv")
    offered = _read(
        db,
        "SELECT DISTINCT postal_service_name AS name FROM raw_linnworks.postal_services",
        {"name": pl.String},
        "postal_services",
        "raw_linnworks",
    )["name"].to_list()
    stock_rows = []
    for flow in config.flows:
        stock = flow_available_to_sell(db, config, flow, exp_dir)
        if stock.source.is_empty():  # no stock figure read yet: nothing to set against (nor does the stock job)
            continue
        stock_rows.append(
            stock.ats.select(
                pl.lit(flow).alias("flow"),
                "location",
                "sku",
                pl.col("level").alias("oms_level"),
                "ats",
                "wms_available",
                "open_unsent",
                "buffer",
            )
        )
    counted = orders.join(lines.group_by("order_key").agg(pl.len().alias("lines")), on="order_key", how="left")
    volume = findings.volumes(
        counted.select("source_system", "order_key", "created_at", pl.col("lines").fill_null(0)), oms_stock, now, days
    )
    shares = {
        name: float(getattr(getattr(config.systems, name), "budget_share", 0.5))
        for name in ("linnworks", "cin7", "shopify", "bigcommerce")
        if getattr(config.systems, name, None) is not None
    }
    stock_minutes = min((stock_config(config, f).every_minutes for f in config.flows), default=15)
    despatched = _read(
        db,
        f"SELECT order_ref, wms, MIN(despatched_at) AS despatched_at FROM {SCHEMA}.despatches GROUP BY order_ref, wms",
        {"order_ref": pl.String, "wms": pl.String, "despatched_at": pl.Datetime("us", "UTC")},
        "despatches",
    )
    sections = {
        "catalogue": findings.catalogue_findings(
            checked,
            catalogues,
            oms_skus,
            bundles,
            storefront_variants(db),
            list(config.flows),
            load_variant_skus(exp_dir / "variant_skus.csv"),
        ),
        "shipping_methods": findings.shipping_methods(checked),
        "services_unmapped": findings.services_unmapped(offered, service_map, "linnworks", "peoplevox")
        if "linnworks_peoplevox" in config.flows and offered
        else pl.DataFrame(schema={"service": pl.String}),
        "locations_unmapped": findings.unmapped_locations(
            oms_stock.select("system", "location"), load_stock_locations(exp_dir / "stock_locations.csv"), config.flows
        ),
        "rule_failures": findings.rule_failures(verdicts, refs),
        "held_orders": findings.held_orders(verdicts, refs),
        "stale_orders": findings.stale_orders(orders, now, stale_days),
        "open_but_despatched": findings.open_but_despatched(orders, despatched),
        "stock_truth": findings.stock_truth(pl.concat(stock_rows)) if stock_rows else pl.DataFrame(),
        "negative_stock": findings.negative_stock(wms_stock),
        "capacity": findings.capacity(
            volume, shares, config.schedules.order_sync_minutes, stock_minutes, limits_for(config)
        ),
    }
    return Audit(now, days, stale_days, list(config.flows), refs.height, sections)
