"""Ingestion assets: Linnworks through dlt, and Whistl's stock snapshot files."""

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import dlt
import polars as pl
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.sources import DltSource

from fulfil_assets.ingest.bigcommerce_source import bigcommerce_source
from fulfil_assets.ingest.cin7_source import cin7_source
from fulfil_assets.ingest.linnworks_source import linnworks_source
from fulfil_assets.ingest.peoplevox_source import peoplevox_source
from fulfil_assets.ingest.shopify_source import shopify_source
from fulfil_assets.ledger import now_utc
from resources.bigcommerce import BigCommerceResource
from resources.cin7 import Cin7Resource
from resources.file_drop import FileDrop
from resources.http import ApiClient
from resources.linnworks import LinnworksResource
from resources.peoplevox import PeoplevoxResource
from resources.shopify import ShopifyResource
from resources.warehouse import Warehouse, WarehouseDb

STOCK_FILE_COLUMNS = ("sku", "on_hand", "allocated", "available", "snapshot_at")


def dlt_pipeline(system: str, db: WarehouseDb | None) -> dlt.Pipeline:
    """One dlt pipeline name per source (two runs of one name at once corrupt its state), landing in
    `raw_<system>` in the warehouse; local state lives under the data folder and is restorable from there."""
    pipelines_dir = Path(os.environ.get("FULFIL_DATA_DIR", "data")) / "dlt"
    return dlt.pipeline(
        pipeline_name=f"fulfil_{system}",
        dataset_name=f"raw_{system}",
        destination=db.dlt_destination() if db else "duckdb",
        pipelines_dir=str(pipelines_dir),
    )


class RawTranslator(DagsterDltTranslator):
    """Raw tables as `raw_<system>/<table>` in the ingest group."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        """Key, group and kinds for one dlt resource."""
        spec = super().get_asset_spec(data)
        system = data.pipeline.dataset_name.removeprefix("raw_") if data.pipeline else "source"
        return spec.replace_attributes(
            key=dg.AssetKey([f"raw_{system}", data.resource.name]), group_name="ingest", deps=[], kinds={"dlt", system}
        )


def run_source(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    system: str,
    source: DltSource,
    client: ApiClient,
    db: WarehouseDb,
) -> Iterator[dg.MaterializeResult]:
    """Run one system's dlt source into `raw_<system>`; metadata: row counts and the calls made against the
    system's rate budget."""
    try:
        events = list(dlt.run(context=context, dlt_source=source, dlt_pipeline=dlt_pipeline(system, db)))
    finally:
        client.close()
    usage = dg.MetadataValue.json(client.stats.as_metadata())
    for event in events:
        # Row counts come from the table itself: dagster-dlt's fetch_row_count fails on a resource that
        # loaded nothing this run (e.g. no order was processed since the last run).
        table = event.asset_key.path[-1]
        rows = (
            db.read(f"SELECT COUNT(*) AS n FROM raw_{system}.{table}")["n"][0]
            if db.table_exists(table, f"raw_{system}")
            else 0
        )
        yield dg.MaterializeResult(
            asset_key=event.asset_key,
            metadata={**(event.metadata or {}), "dagster/row_count": int(rows), "api_usage": usage},
        )


def _dlt_assets(system: str, source: DltSource) -> Any:
    return dlt_assets(
        dlt_source=source,
        dlt_pipeline=dlt_pipeline(system, None),
        name=f"{system}_raw",
        dagster_dlt_translator=RawTranslator(),
        pool=system,
        op_tags={"fulfil/warehouse": "write"},
    )


@_dlt_assets("linnworks", linnworks_source())
def linnworks_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, linnworks: LinnworksResource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Linnworks open orders (whole open set, merged on OrderId) and processed/cancelled orders (incremental),
    through the shared Linnworks client."""
    client = linnworks.get_client()
    yield from run_source(context, dlt, "linnworks", linnworks_source(client), client, warehouse.get_db())


@_dlt_assets("cin7", cin7_source())
def cin7_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, cin7: Cin7Resource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Cin7 Core sales changed since the last run (each fetched in full) and product availability per location."""
    client = cin7.get_client()
    yield from run_source(context, dlt, "cin7", cin7_source(client), client, warehouse.get_db())


@_dlt_assets("shopify", shopify_source())
def shopify_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, shopify: ShopifyResource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Shopify orders changed since the last run, locations and inventory levels per location."""
    client = shopify.get_client()
    yield from run_source(context, dlt, "shopify", shopify_source(client), client, warehouse.get_db())


@_dlt_assets("bigcommerce", bigcommerce_source())
def bigcommerce_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, bigcommerce: BigCommerceResource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """BigCommerce orders changed since the last run with their lines and ship-to addresses, and inventory."""
    client = bigcommerce.get_client()
    yield from run_source(context, dlt, "bigcommerce", bigcommerce_source(client), client, warehouse.get_db())


@_dlt_assets("peoplevox", peoplevox_source())
def peoplevox_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, peoplevox: PeoplevoxResource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Peoplevox item catalogue, available stock, sales order status and despatches since the last run."""
    client = peoplevox.get_client()
    yield from run_source(context, dlt, "peoplevox", peoplevox_source(client), client, warehouse.get_db())


RAW_ASSETS = {
    "linnworks": linnworks_raw,
    "cin7": cin7_raw,
    "shopify": shopify_raw,
    "bigcommerce": bigcommerce_raw,
    "peoplevox": peoplevox_raw,
}


def parse_stock_file(data: bytes, name: str, wms: str = "whistl") -> pl.DataFrame:
    """A full stock snapshot file -> `wms_stock` rows (one location per WMS site)."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    missing = [c for c in STOCK_FILE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{name}: missing columns {', '.join(missing)}")
    frame = pl.DataFrame(list(reader), schema={c: pl.String for c in reader.fieldnames or []})
    return frame.select(
        pl.lit(wms).alias("wms"),
        pl.col("sku"),
        pl.lit("main").alias("location"),
        pl.col("on_hand").cast(pl.Int64),
        pl.col("allocated").cast(pl.Int64),
        pl.col("available").cast(pl.Int64),
        pl.col("snapshot_at").str.to_datetime(time_zone="UTC"),
        pl.lit(name).alias("source_file"),
    )


@dg.asset(group_name="ingest", kinds={"whistl", "sftp"}, tags={"fulfil/warehouse": "write"})
def wms_stock(context: dg.AssetExecutionContext, warehouse: Warehouse, whistl_drop: FileDrop) -> dg.MaterializeResult:
    """Whistl's physical stock (and so its item catalogue) from the newest full stock snapshot `inv_*.csv`.
    Older snapshots are archived; with no new snapshot the table keeps the last one."""
    db = warehouse.get_db()
    with whistl_drop.session() as drop:
        files = drop.list("out", "inv_*.csv")
        if not files:
            return dg.MaterializeResult(metadata={"snapshot": "none new", "skus": 0})
        newest = files[-1]
        frame = parse_stock_file(drop.read("out", newest.name), newest.name)
        db.write("wms_stock", frame, mode="replace", replace_where="wms = 'whistl'")
        for f in files:
            drop.move("out", f.name, "out/archive")
    context.log.info(f"{newest.name}: {frame.height} SKUs")
    return dg.MaterializeResult(
        metadata={
            "snapshot": newest.name,
            "skus": frame.height,
            "units_available": int(frame["available"].sum()),
            "snapshot_at": str(now_utc()),
        }
    )
