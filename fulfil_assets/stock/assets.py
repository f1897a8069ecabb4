"""Stock assets, one pair per flow: `stock_deltas/<flow>` (available to sell per SKU and order-system location,
beside what the order system shows and what fulfil last confirmed) and `stock_pushes/<flow>` (the levels that
changed, sent through the `stock_pushes` ledger and the effect module). Stock only flows warehouse -> order
system (Linnworks -> Shopify in `shopify_linnworks`); nothing here writes to a warehouse."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
import polars as pl

from fulfil_assets import effects, routing
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig, is_shadow, stock_config
from fulfil_assets.ledger import now_utc
from fulfil_assets.push.common import record_intents
from fulfil_assets.stock.ats import SOURCE, available_to_sell, deltas, open_unsent
from fulfil_assets.stock.pushes import (
    TABLE,
    BigCommerceStock,
    Cin7Stock,
    LinnworksStock,
    ShopifyStock,
    StockSender,
    last_confirmed,
    payloads,
    push_intents,
)
from fulfil_assets.validate.assets import SENT  # orders that (may) have reached their target
from fulfil_assets.validate.mappings import load_bundles, load_stock_buffers, load_stock_locations
from resources.warehouse import SCHEMA, WarehouseDb

EXPECTATIONS = Path("expectations")


class StockRunConfig(dg.Config):
    """Where the stock mapping tables live."""

    expectations_dir: str = str(EXPECTATIONS)


def stock_source(db: WarehouseDb, flow: str) -> pl.DataFrame:
    """What the flow's stock master holds per location and SKU: the warehouse's available, or for
    `shopify_linnworks` Linnworks' own level."""
    wms = FLOW_SYSTEMS[flow][1]
    if flow == "shopify_linnworks":
        sql = f"SELECT location AS source_location, sku, level AS available FROM {SCHEMA}.oms_stock WHERE oms = '{wms}'"
    else:
        sql = f"SELECT location AS source_location, sku, available FROM {SCHEMA}.wms_stock WHERE wms = '{wms}'"
    return db.read(sql, schema=SOURCE)


def flow_orders(db: WarehouseDb, config: FulfilConfig, flow: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The flow's open orders, their lines, and those of them the target already holds. For `shopify_linnworks`
    none counts as held: Linnworks' stock level drops only when an order is processed, so every open Shopify
    order still weighs on it."""
    oms = FLOW_SYSTEMS[flow][0]
    staged = db.read(
        f"SELECT order_key, source_system, fulfilment_location, status FROM {SCHEMA}.orders "
        f"WHERE source_system = '{oms}' AND status = 'open'",
        schema={"order_key": pl.String, "source_system": pl.String, "fulfilment_location": pl.String},
    )
    mine = staged.join(
        routing.order_routes(staged, config).filter(pl.col("flow") == flow).select("order_key"), on="order_key"
    )
    lines = db.read(
        f"SELECT order_key, sku, quantity FROM {SCHEMA}.order_lines WHERE order_key LIKE '{oms}:%'",
        schema={"order_key": pl.String, "sku": pl.String, "quantity": pl.Int64},
    )
    if flow == "shopify_linnworks":
        sent = pl.DataFrame(schema={"order_key": pl.String})
    else:
        sent = db.read(
            f"SELECT order_key FROM {SCHEMA}.wms_submissions WHERE flow = '{flow}' AND status IN {SENT}",
            schema={"order_key": pl.String},
        )
    return mine, lines, sent


class FlowStock(NamedTuple):
    """A flow's available to sell and what it was computed from."""

    ats: pl.DataFrame  # per order-system location and SKU: source figure, open unsent, buffer, result, shown
    source: pl.DataFrame  # the stock master's figures (`source_location, sku, available`)
    locations: pl.DataFrame  # the flow's stock location mapping (`location, source_location`)
    oms_levels: pl.DataFrame  # what the order system shows (`location, sku, level`)


def flow_available_to_sell(db: WarehouseDb, fulfil: FulfilConfig, flow: str, exp: Path) -> FlowStock:
    """What may be sold in the flow's order system per mapped location and SKU now, beside what it shows: the
    stock job pushes the difference, the audit reports it."""
    oms = FLOW_SYSTEMS[flow][0]
    source = stock_source(db, flow)
    locations = load_stock_locations(exp / "stock_locations.csv").filter(pl.col("flow") == flow)
    bundles = load_bundles(exp / "bundles.csv")
    oms_levels = db.read(
        f"SELECT location, sku, level FROM {SCHEMA}.oms_stock WHERE oms = '{oms}'", schema={"level": pl.Int64}
    )
    orders, lines, sent = flow_orders(db, fulfil, flow)
    ats = available_to_sell(
        source,
        locations.select("location", "source_location"),
        oms_levels,
        open_unsent(orders, lines, sent, bundles),
        load_stock_buffers(exp / "stock_buffers.csv"),
        bundles,
        stock_config(fulfil, flow).buffer,
    )
    return FlowStock(ats, source, locations, oms_levels)


def _sender(context: dg.AssetExecutionContext, oms: str, batch: int | None) -> tuple[StockSender, Any]:
    client = getattr(context.resources, oms).get_client()
    if oms == "linnworks":
        return LinnworksStock(client, batch), client
    if oms == "cin7":
        return Cin7Stock(client, now_utc(), batch), client
    if oms == "bigcommerce":
        return BigCommerceStock(client, batch), client
    return ShopifyStock(client, batch), client


def shopify_items(db: WarehouseDb) -> pl.DataFrame:
    """Shopify SKU -> inventory item (the key its stock is set by), from the ingested catalogue."""
    schema = {"sku": pl.String, "inventory_item_id": pl.Int64}
    if not db.table_exists("products__variants", "raw_shopify"):
        return pl.DataFrame(schema=schema)
    return db.read(
        "SELECT DISTINCT sku, inventory_item_id FROM raw_shopify.products__variants "
        "WHERE sku IS NOT NULL AND sku <> ''",
        schema=schema,
    )


def bigcommerce_items(db: WarehouseDb) -> pl.DataFrame:
    """BigCommerce SKU -> its product, how that product tracks stock and the product's own SKU."""
    schema = {"sku": pl.String, "product_id": pl.Int64, "inventory_tracking": pl.String, "product_sku": pl.String}
    if not (db.table_exists("products", "raw_bigcommerce") and db.table_exists("inventory_levels", "raw_bigcommerce")):
        return pl.DataFrame(schema=schema)
    return db.read(
        "SELECT DISTINCT i.sku, i.product_id, p.inventory_tracking, p.sku AS product_sku "
        "FROM raw_bigcommerce.inventory_levels i LEFT JOIN raw_bigcommerce.products p ON p.id = i.product_id",
        schema=schema,
    )


def corrections_table(frame: pl.DataFrame, n: int = 10) -> str:
    """The largest corrections as a markdown table: what the order system showed, what it was set to."""
    top = (
        frame.with_columns((pl.col("ats") - pl.col("oms_level").fill_null(0)).alias("change"))
        .sort(pl.col("change").abs(), descending=True)
        .head(n)
    )
    rows = "\n".join(
        f"| {r['location']} | {r['sku']} | {r['oms_level']} | {r['ats']} | {r['change']:+d} | {r['wms_available']} "
        f"| {r['open_unsent']} | {r['buffer']} |"
        for r in top.iter_rows(named=True)
    )
    header = "| location | sku | order system had | set to | change | stock source | open unsent | buffer |\n"
    return header + "|---|---|---|---|---|---|---|---|\n" + rows


def stock_assets(config: FulfilConfig) -> list[dg.AssetsDefinition]:
    """One stock multi-asset per configured flow."""
    return [_flow_stock(config, flow) for flow in config.flows]


def _flow_stock(fulfil: FulfilConfig, flow: str) -> dg.AssetsDefinition:
    oms, wms = FLOW_SYSTEMS[flow]
    settings = stock_config(fulfil, flow)
    deltas_key, pushes_key = dg.AssetKey(["stock_deltas", flow]), dg.AssetKey(["stock_pushes", flow])

    @dg.multi_asset(
        name=f"{flow}_stock",
        group_name="stock",
        specs=[
            dg.AssetSpec(
                deltas_key,
                deps=["wms_stock", "oms_stock", "orders", "order_lines"],
                description=f"Available to sell in {oms}, per SKU and mapped location: {wms}'s figure, what open "
                "orders not yet at the warehouse hold, the buffer, the result, what the order system shows and "
                "what fulfil last confirmed there (table fulfil.stock_deltas).",
                kinds={"polars", oms},
                metadata={"dagster/table_name": f"{SCHEMA}.stock_deltas"},
            ),
            dg.AssetSpec(
                pushes_key,
                deps=[deltas_key],
                description=f"The levels that changed, set in {oms} in batches of its API's maximum through the "
                "stock_pushes ledger (shadow mode records them and sends nothing).",
                kinds={oms},
                metadata={"dagster/table_name": f"{SCHEMA}.stock_pushes"},
                # Red when the last push (an unchanged catalogue counts: nothing was due) is older than twice
                # the flow's interval: the order systems may be selling stock that is no longer there.
                freshness_policy=dg.FreshnessPolicy.time_window(
                    fail_window=timedelta(minutes=2 * settings.every_minutes),
                    warn_window=timedelta(minutes=settings.every_minutes + 1),
                ),
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "every_due_level_delivered",
                asset=pushes_key,
                description="Every changed level reached the order system (none left due or refused). Red: the "
                "office checks the SKU and location named in the ledger's last_error.",
            )
        ],
        required_resource_keys={"warehouse", oms},  # named by the order system: typed parameters need fixed names
    )
    def flow_stock(context: dg.AssetExecutionContext, config: StockRunConfig) -> Iterator[Any]:
        """Compute available to sell for the flow and send the levels that changed."""
        with context.resources.warehouse.session() as db:
            now = now_utc()
            ats, source, locations, oms_levels = flow_available_to_sell(db, fulfil, flow, Path(config.expectations_dir))
            ledger = db.read(
                f"SELECT idempotency_key, status, location, sku, level FROM {SCHEMA}.{TABLE} WHERE flow = '{flow}'",
                schema={"level": pl.Int64},
            )
            frame = deltas(ats, last_confirmed(ledger), flow, oms)
            if source.is_empty():  # no stock figure yet: pushing would zero the whole catalogue
                frame = frame.with_columns(pl.lit(False).alias("to_push"))
            db.write(
                "stock_deltas",
                frame.with_columns(pl.lit(now).alias("computed_at")),
                mode="replace",
                replace_where=f"flow = '{flow}'",
            )
            unknown = sorted(set(locations["location"]) - set(oms_levels["location"]))
            for location in unknown:  # a typo in stock_locations.csv, or a location the order system dropped
                context.log.warning(
                    f"stock_locations.csv maps {flow} to {oms} location {location!r}, which {oms} "
                    "does not list: it receives no stock"
                )
            negative = int(source.filter(pl.col("available") < 0).height)
            if negative:
                context.log.warning(f"{negative} SKUs show negative stock at {wms} (oversold there): counted as 0")
            yield dg.MaterializeResult(
                asset_key=deltas_key,
                metadata={
                    "dagster/row_count": frame.height,
                    "skus_changed": int(frame["to_push"].sum()),
                    "source_rows": source.height,
                    "source_negative_counted_as_zero": negative,
                    "mapped_locations": locations.height,
                    "mapped_locations_unknown_to_oms": dg.MetadataValue.json(unknown),
                    "units_on_open_unsent_orders": int(frame["open_unsent"].sum() or 0),
                },
            )

            due = frame.filter(pl.col("to_push"))
            items = {"shopify": shopify_items, "bigcommerce": bigcommerce_items}.get(oms, lambda _: None)(db)
            intents, older = push_intents(payloads(due, oms, items), ledger, flow, oms)
            effects.record(db, TABLE, older, effects.Outcome(effects.HELD, error="superseded by a newer level"))
            record_intents(db, fulfil, TABLE, intents, [flow])
            sender, client = _sender(context, oms, settings.batch)
            sender.observe(oms_levels)
            wanted = intents.select("idempotency_key")
            report = effects.deliver(
                db,
                TABLE,
                sender,
                where=f"flow = '{flow}'",
                wanted=lambda rows: rows.join(wanted, on="idempotency_key", how="semi"),
                batches=sender.batches,
                log=context.log.warning,
                chunk=max(effects.CLAIM_CHUNK, sender.batch),
            )
            left = db.read(
                f"SELECT status, COUNT(*) AS n FROM {SCHEMA}.{TABLE} WHERE flow = '{flow}' "
                f"AND status IN ('{effects.PENDING}', '{effects.SENDING}', '{effects.FAILED}') GROUP BY status"
            )
            waiting = dict(left.iter_rows())
            yield dg.AssetCheckResult(
                asset_key=pushes_key,
                check_name="every_due_level_delivered",
                passed=not waiting,
                description="Every due stock level is confirmed by the order system."
                if not waiting
                else "Stock levels not yet confirmed by the order system: "
                + ", ".join(f"{n} {status}" for status, n in waiting.items())
                + " (the next stock run sends what is pending; failed ones carry the order system's words).",
                metadata={f"levels_{k}": int(v) for k, v in waiting.items()}
                | {"first_errors": dg.MetadataValue.json(report.errors[:5])},
            )
            sent_rows = due.join(intents.select("location", "sku"), on=["location", "sku"], how="semi")
            yield dg.MaterializeResult(
                asset_key=pushes_key,
                metadata={
                    "skus_changed": intents.height,
                    "levels_sent": report.sent,
                    "levels_refused": report.failed,
                    "levels_deferred": report.deferred,
                    "superseded": len(older),
                    "calls": sender.calls,
                    "calls_lower_bound": -(-intents.height // sender.batch),
                    "batch_maximum": sender.batch,
                    "shadow": is_shadow(fulfil, flow),
                    "largest_corrections": dg.MetadataValue.md(corrections_table(sent_rows)),
                    **client.stats.as_metadata(),
                },
            )

    return flow_stock
