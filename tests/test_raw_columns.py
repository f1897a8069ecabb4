"""The raw tables the dlt sources declare (`fulfil_assets/ingest/raw_columns.yaml`): Linnworks' are its Swagger
response models as dlt lays them out, and a first load of systems that hold nothing creates every declared table
with its declared types, on DuckDB and PostgreSQL, without dlt's "did not receive any data" warnings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention
from flow_helpers import declared_layout, dlt_warnings_during, raw_layout
from test_ingest_assets import all_systems_config

from emulators.server import Emulators
from fulfil_assets.definitions import build_definitions
from fulfil_assets.ingest.assets import SOURCES
from fulfil_assets.ingest.columns import declared_tables
from resources.warehouse import WarehouseDb

SPECS = Path(__file__).resolve().parents[1] / "emulators" / "specs" / "linnworks"
# The model each Linnworks table is read from: (spec file, definition, table).
LINNWORKS_MODELS = [
    ("orders", "OpenOrder", "open_orders"),
    ("processedorders", "ProcessedOrderWeb", "processed_orders"),
    ("stock", "StockItemFull", "stock_items"),
    ("postalservices", "PostalService_WithChannelAndShippingLinks", "postal_services"),
]
NAMING = NamingConvention()
MAX_NESTING = 2  # linnworks_source's max_table_nesting


def _dlt_type(prop: dict[str, Any]) -> str:
    kind = prop.get("type")
    if kind == "string":
        return "timestamp" if prop.get("format") == "date-time" else "text"
    return {"integer": "bigint", "number": "double", "boolean": "bool"}[kind]


def spec_tables(
    defs: dict[str, Any], model: str, table: str, declared: dict[str, dict[str, str]], level: int = MAX_NESTING
) -> Iterator[tuple[str, str, str]]:
    """(table, column, dlt type) of a Swagger model as dlt's relational normalizer lays it out: objects flatten
    into `a__b` columns, arrays become `<table>__<field>` tables (scalars in `value`), and what lies past the
    nesting level stays JSON; an object the declaration keeps whole as JSON is one column."""
    yield from _columns(defs, model, table, "", declared, level)


def _columns(defs: dict[str, Any], model: str, table: str, prefix: str, declared: Any, level: int) -> Iterator:
    for field, prop in defs[model].get("properties", {}).items():
        column = f"{prefix}__{NAMING.normalize_identifier(field)}" if prefix else NAMING.normalize_identifier(field)
        nested = "$ref" in prop or prop.get("type") in ("array", "object")
        if nested and (level <= 0 or declared.get(table, {}).get(column) == "json" or prop.get("type") == "object"):
            yield table, column, "json"
        elif "$ref" in prop:
            yield from _columns(defs, prop["$ref"].rsplit("/", 1)[-1], table, column, declared, level - 1)
        elif prop.get("type") == "array":
            child, items = f"{table}__{column}", prop["items"]
            if "$ref" in items:
                yield from _columns(defs, items["$ref"].rsplit("/", 1)[-1], child, "", declared, level - 1)
            else:
                yield child, "value", _dlt_type(items)
        else:
            yield table, column, _dlt_type(prop)


def test_linnworks_raw_tables_are_the_swagger_response_models() -> None:
    declared = declared_tables("linnworks")
    expected: dict[str, dict[str, str]] = {}
    for spec_file, model, table in LINNWORKS_MODELS:
        defs = json.loads((SPECS / f"{spec_file}.json").read_text())["definitions"]
        for name, column, dlt_type in spec_tables(defs, model, table, declared):
            expected.setdefault(name, {})[column] = dlt_type
    ours = {t: {c: v for c, v in cols.items() if c.startswith("_")} for t, cols in declared.items()}
    assert ours == {t: {} for t in declared} | {
        "open_orders": {"_fulfil_seen_at": "timestamp"},
        "processed_orders": {"_changed_at": "timestamp"},
    }
    assert {t: {c: v for c, v in cols.items() if not c.startswith("_")} for t, cols in declared.items()} == expected
    # The money and measures the emulator sends as whole numbers are declared as the spec's decimals.
    assert declared["open_orders__items"]["cost"] == declared["stock_items__stock_levels"]["unit_cost"] == "double"


def test_every_source_declares_only_what_it_loads() -> None:
    for system, source in SOURCES.items():
        resources = set(source().resources)
        for table in declared_tables(system):
            # (rows a resource routes to a table of their own: files or records that could not be read)
            unreadable = {"unreadable_files", "unreadable_sales"}
            assert table.split("__")[0] in resources | unreadable, f"{system}.{table} has no resource"


@pytest.mark.world(n_orders=0, n_skus=30)
def test_a_first_load_of_empty_systems_creates_every_declared_table(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    defs = build_definitions(all_systems_config(emulators, tmp_path))
    graph = defs.resolve_asset_graph()
    raw = [k for k in graph.get_all_asset_keys() if (graph.get(k).group_name or "").endswith("_ingest")]
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_implicit_global_asset_job_def()
    result, warnings = dlt_warnings_during(lambda: job.execute_in_process(instance=instance, asset_selection=raw))
    assert result.success
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    for system in SOURCES:
        assert raw_layout(db, system) == declared_layout(system), system
    assert db.read("SELECT COUNT(*) AS n FROM raw_linnworks.open_orders__items")["n"][0] == 0
    assert not [w for w in warnings if "did not receive any data" in w]
    logs = [e.message for e in instance.all_logs(result.run_id) if "declared tables" in (e.message or "")]
    assert any(m.startswith("linnworks: created ") for m in logs), logs
