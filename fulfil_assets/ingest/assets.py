"""Ingestion assets: one dlt source per system (Whistl's files through dlt's filesystem source), landing in
`raw_<system>`."""

import fcntl
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.common.schema import Schema
from dlt.sources import DltSource

from fulfil_assets.ingest.bigcommerce_source import bigcommerce_source
from fulfil_assets.ingest.cin7_source import cin7_source
from fulfil_assets.ingest.columns import create_missing_tables
from fulfil_assets.ingest.cursors import READ_MINUTES, details_per_run
from fulfil_assets.ingest.linnworks_source import linnworks_source
from fulfil_assets.ingest.peoplevox_source import peoplevox_source
from fulfil_assets.ingest.shopify_source import shopify_source
from fulfil_assets.ingest.whistl_source import drop_location, whistl_source
from resources.bigcommerce import BigCommerceResource
from resources.cin7 import Cin7Resource
from resources.file_drop import FileDrop
from resources.http import ApiClient
from resources.limits import LIMITS
from resources.linnworks import LinnworksResource
from resources.peoplevox import PeoplevoxResource
from resources.shopify import ShopifyResource
from resources.warehouse import Warehouse, WarehouseDb, lock_holder

T = TypeVar("T")
READ_MINUTES_TAG = "fulfil/read_minutes"  # a run tag: minutes' worth of detail reads a run takes (`all`: no cut)
DLT_LOCK_ATTEMPTS = 5  # dlt steps that meet an outside session on the DuckDB file, each waited out


def dlt_pipeline(system: str, db: WarehouseDb | None) -> dlt.Pipeline:
    """One dlt pipeline name per source (two runs of one name at once corrupt its state), landing in
    `raw_<system>` in the warehouse; local state lives under the data folder and is restorable from there."""
    pipelines_dir = Path(os.environ.get("FULFIL_DATA_DIR", "data")) / "dlt"
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    # dlt writes the pipeline's state file when the object is made (every process loading the code location
    # does so): processes starting at once raced on its temporary file. One at a time, across processes.
    with open(pipelines_dir / ".fulfil.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return dlt.pipeline(
            pipeline_name=f"fulfil_{system}",
            dataset_name=f"raw_{system}",
            destination=db.dlt_destination() if db else "duckdb",
            pipelines_dir=str(pipelines_dir),
        )


def ingest_group(system: str) -> str:
    """The UI group of one system's raw assets (`linnworks_ingest`, ...)."""
    return f"{system}_ingest"


class RawTranslator(DagsterDltTranslator):
    """Raw tables as `raw_<system>/<table>`, grouped per system."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        """Key, group and kinds for one dlt resource."""
        spec = super().get_asset_spec(data)
        system = data.pipeline.dataset_name.removeprefix("raw_") if data.pipeline else "source"
        return spec.replace_attributes(
            key=dg.AssetKey([f"raw_{system}", data.resource.name]),
            group_name=ingest_group(system),
            deps=[],
            kinds={"dlt", system},
        )


class RawDltResource(DagsterDltResource):
    """dagster-dlt's resource without its schema damage: its column-schema metadata pops `name`, `data_type`,
    `nullable` and `unique` off the live dlt schema's column dicts (dagster-io/dagster#34052), which strips the
    types of every column a later table's metadata or the declared-table step then reads. It is given copies."""

    def _extract_table_schema_metadata(self, table_name: str, schema: Schema) -> dg.TableSchema:
        """The table's column schema, read from a copy of the dlt schema."""
        return super()._extract_table_schema_metadata(table_name, schema.clone())


def finish_pending(pipeline: dlt.Pipeline) -> bool:
    """Load what a run killed between extract and load left behind (dlt keeps it as pending packages, with the
    incremental state that goes with it), so this run's extract starts from where that one got to."""
    if not pipeline.has_pending_data:
        return False
    # Not `pipeline.run()`: it first syncs with the destination, and a destination that never received this
    # pipeline's state makes dlt reset the local state, cursors included, so everything would be read again.
    if pipeline.list_extracted_load_packages():
        pipeline.normalize()
    pipeline.load()
    return True


def dlt_writes(
    context: dg.AssetExecutionContext, db: WarehouseDb, pipeline: dlt.Pipeline, step: str, write: Callable[[], T]
) -> T:
    """Run one dlt step that opens the warehouse itself under the DuckDB writer lock. A process outside fulfil
    (an analyst's session) can still hold the file as dlt opens it: then say who, wait for it to let go (up to
    the warehouse's lock wait) and run the step again; what was read stays as dlt's pending package meanwhile."""
    attempt = 0
    while True:
        attempt += 1
        with db.writer():
            try:
                return write()
            except Exception as exc:
                holder = lock_holder(exc) if db.is_duckdb else None
                if holder is None or attempt == DLT_LOCK_ATTEMPTS:
                    raise
                context.log.warning(
                    f"{pipeline.pipeline_name}: another process ({holder}) took the warehouse file as dlt's {step} "
                    "step opened it; waiting for it to let go, then running the step again"
                )
                with db.session():  # waits for the file, naming the holder if it is kept past the lock wait
                    pass


def load_phases(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    source: DltSource,
    pipeline: dlt.Pipeline,
    db: WarehouseDb,
) -> Iterator[tuple[dg.AssetKey, dict[str, Any]]]:
    """dlt's steps one by one, so that the warehouse is held only while dlt writes it: its state is read (sync)
    and its packages loaded under the DuckDB writer lock, for seconds; the extract (every API call, every wait on
    a rate limit) and the normalize run with no lock held. Yields each selected table's asset key and dlt's
    metadata for it."""
    translator = RawTranslator()
    resources = {
        translator.get_asset_spec(DltResourceTranslatorData(resource=r, pipeline=pipeline)).key: r
        for r in source.selected_resources.values()
    }
    if context.is_subset:
        resources = {k: r for k, r in resources.items() if k in context.selected_asset_keys}
        source = source.with_resources(*[r.name for r in resources.values()])
    if dlt_writes(context, db, pipeline, "finish", lambda: finish_pending(pipeline)):
        context.log.warning(f"{pipeline.pipeline_name}: loaded the data a run left half way before reading new data")
    dlt_writes(context, db, pipeline, "sync", pipeline.sync_destination)
    pipeline.extract(source, loader_file_format=db.dlt_file_format)
    pipeline.normalize()
    load_info = dlt_writes(context, db, pipeline, "load", pipeline.load)
    load_info.raise_on_failed_jobs()
    for key, resource in resources.items():
        yield key, dict(dlt.extract_resource_metadata(context, resource, load_info, pipeline))


def detail_cap(context: dg.AssetExecutionContext, calls_per_minute: float, calls_per_record: float) -> int | None:
    """How many records this run reads in detail: `fulfil/read_minutes` of the client's share (an order sync
    job's own interval, so a backlog drains at the whole share), none for `all` (the audit reads everything),
    else `READ_MINUTES`."""
    minutes = context.run.tags.get(READ_MINUTES_TAG)
    if minutes == "all":
        return None
    return details_per_run(calls_per_minute, calls_per_record, float(minutes) if minutes else READ_MINUTES)


def run_source(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    system: str,
    source: Callable[[], DltSource],
    client: ApiClient | None,
    db: WarehouseDb,
) -> Iterator[dg.MaterializeResult]:
    """Run one system's dlt source (`source()` makes it) into `raw_<system>`, holding the warehouse only for
    dlt's writes; metadata: row counts and the calls made against the system's rate budget (API systems)."""
    pipeline = dlt_pipeline(system, db)
    try:
        loaded = list(load_phases(context, dlt, source(), pipeline, db))
    finally:
        if client is not None:
            client.close()
    tables = db.table_names(f"raw_{system}")
    with db.writer():
        created = create_missing_tables(pipeline, tables)
    tables |= set(created)
    if created:
        context.log.info(f"{system}: created {len(created)} declared tables no row has reached yet")
    usage = {"api_usage": dg.MetadataValue.json(client.stats.as_metadata())} if client is not None else {}
    for key, metadata in loaded:
        # Row counts come from the table itself: dagster-dlt's fetch_row_count fails on a resource that
        # loaded nothing this run (e.g. no order was processed since the last run).
        table = key.path[-1]
        rows = db.read(f"SELECT COUNT(*) AS n FROM raw_{system}.{table}")["n"][0] if table in tables else 0
        yield dg.MaterializeResult(asset_key=key, metadata={**metadata, "dagster/row_count": int(rows), **usage})


SOURCES: dict[str, Callable[..., DltSource]] = {
    "linnworks": linnworks_source,
    "cin7": cin7_source,
    "shopify": shopify_source,
    "bigcommerce": bigcommerce_source,
    "peoplevox": peoplevox_source,
    "whistl": whistl_source,
}


def _dlt_assets(system: str) -> Any:
    return dlt_assets(
        dlt_source=SOURCES[system](),
        dlt_pipeline=dlt_pipeline(system, None),
        name=f"{system}_raw",
        dagster_dlt_translator=RawTranslator(),
        pool=system,
    )


@_dlt_assets("linnworks")
def linnworks_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, linnworks: LinnworksResource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Linnworks open orders (whole open set, merged on OrderId) and processed/cancelled orders (incremental),
    through the shared Linnworks client."""
    client = linnworks.get_client()
    yield from run_source(context, dlt, "linnworks", lambda: linnworks_source(client), client, warehouse.get_db())


@_dlt_assets("cin7")
def cin7_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, cin7: Cin7Resource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Cin7 Core sales changed since the last run (each fetched in full, a few minutes' worth a run) and product
    availability per location."""
    client = cin7.get_client()
    cap = detail_cap(context, client.calls_per_minute, LIMITS["cin7"].calls_per_order)
    source = partial(cin7_source, client, max_details=cap)
    yield from run_source(context, dlt, "cin7", source, client, warehouse.get_db())


@_dlt_assets("shopify")
def shopify_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, shopify: ShopifyResource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Shopify orders changed since the last run (the fulfillment orders of a few minutes' worth a run),
    locations and inventory levels per location."""
    client = shopify.get_client()
    cap = detail_cap(context, client.calls_per_minute, LIMITS["shopify"].calls_per_order)
    source = partial(shopify_source, client, max_details=cap)
    yield from run_source(context, dlt, "shopify", source, client, warehouse.get_db())


@_dlt_assets("bigcommerce")
def bigcommerce_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, bigcommerce: BigCommerceResource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """BigCommerce orders changed since the last run with their lines and ship-to addresses (a few minutes'
    worth a run), and inventory."""
    client = bigcommerce.get_client()
    cap = detail_cap(context, client.calls_per_minute, LIMITS["bigcommerce"].calls_per_order)
    source = partial(bigcommerce_source, client, max_details=cap)
    yield from run_source(context, dlt, "bigcommerce", source, client, warehouse.get_db())


@_dlt_assets("peoplevox")
def peoplevox_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, peoplevox: PeoplevoxResource, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Peoplevox item catalogue, available stock, sales order status and despatches since the last run."""
    client = peoplevox.get_client()
    yield from run_source(context, dlt, "peoplevox", lambda: peoplevox_source(client), client, warehouse.get_db())


@_dlt_assets("whistl")
def whistl_raw(
    context: dg.AssetExecutionContext, dlt: DagsterDltResource, whistl_drop: FileDrop, warehouse: Warehouse
) -> Iterator[dg.MaterializeResult]:
    """Every row of Whistl's stock snapshot and despatch confirmation files (folder or SFTP) that changed since
    the last run (rows merge on file and row), and every file that cannot be read as a whole, with the reason.
    Staging judges each snapshot file and archives or quarantines it; the despatch stage does so for despatch
    files."""
    db = warehouse.get_db()
    bucket, credentials = drop_location(
        whistl_drop.url, whistl_drop.password, whistl_drop.timeout_s, whistl_drop.host_key, whistl_drop.known_hosts
    )
    yield from run_source(context, dlt, "whistl", lambda: whistl_source(bucket, credentials), None, db)


RAW_ASSETS = {
    "linnworks": linnworks_raw,
    "cin7": cin7_raw,
    "shopify": shopify_raw,
    "bigcommerce": bigcommerce_raw,
    "peoplevox": peoplevox_raw,
    "whistl": whistl_raw,
}
