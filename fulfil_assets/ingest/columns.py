"""The raw tables each source declares (`raw_columns.yaml`): every table and column with its dlt data type, so a
field that arrives empty still has its type (no "did not receive any data" warnings, no column that appears only
once a value does, no `__v_double` variant when a price first comes as `0`), and an empty first load creates
the same tables as a full one."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import dlt
import yaml
from dlt.common.schema import Schema
from dlt.common.schema.typing import TColumnSchema, TTableSchema
from dlt.sources import DltResource

DECLARED = Path(__file__).with_name("raw_columns.yaml")

# The columns dlt's normalizer adds to every row (its id; in a root table the load, in a nested one the links to
# its parent and, under a merged root, to its root), declared with the hints the normalizer gives them, so a
# table can be created before its first row exactly as its first row would create it.
ROW_ID: TColumnSchema = {"name": "_dlt_id", "data_type": "text", "nullable": False, "unique": True, "row_key": True}
ROOT_COLUMNS: dict[str, TColumnSchema] = {
    "_dlt_load_id": {"name": "_dlt_load_id", "data_type": "text", "nullable": False},
    "_dlt_id": ROW_ID,
}
NESTED_COLUMNS: dict[str, TColumnSchema] = {
    "_dlt_parent_id": {"name": "_dlt_parent_id", "data_type": "text", "nullable": False, "parent_key": True},
    "_dlt_list_idx": {"name": "_dlt_list_idx", "data_type": "bigint", "nullable": False},
    "_dlt_id": ROW_ID,
}
ROOT_KEY: TColumnSchema = {"name": "_dlt_root_id", "data_type": "text", "nullable": False, "root_key": True}


@cache
def declared_tables(system: str) -> dict[str, dict[str, str]]:
    """`{table: {column: dlt data type}}` declared for one system's raw dataset."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: every code-location load reads this file
    return yaml.load(DECLARED.read_text(encoding="utf-8"), Loader=loader)[system]


def parent_table(table: str, tables: list[str]) -> str | None:
    """The declared table `table` nests in: the longest other declared name it extends by `__...` (a flattened
    dict in between is part of the name: `sales__order__lines` nests in `sales`). None for a root table."""
    parents = [t for t in tables if table.startswith(t + "__")]
    return max(parents, key=len) if parents else None


def table_schemas(system: str, resources: list[DltResource]) -> list[TTableSchema]:
    """The declared tables as dlt table schemas: roots under their resource, nested tables with their parent
    and link columns (a root key too under a merged root, as dlt's merge adds it)."""
    tables = declared_tables(system)
    names = list(tables)
    by_name = {r.table_name if isinstance(r.table_name, str) else r.name: r for r in resources}
    schemas: list[TTableSchema] = []
    for name, columns in tables.items():
        table: TTableSchema = {
            "name": name,
            "columns": {c: {"name": c, "data_type": t, "nullable": True} for c, t in columns.items()},
        }
        parent = parent_table(name, names)
        if parent is None:
            if name in by_name:  # else rows reach it from several resources (Whistl's `unreadable_files`)
                table["resource"] = by_name[name].name
            table["columns"] = {**table["columns"], **ROOT_COLUMNS}
        else:
            merged = by_name[root_table(name, names)].write_disposition == "merge"
            table["parent"] = parent
            table["columns"] = {**table["columns"], **NESTED_COLUMNS, **({"_dlt_root_id": ROOT_KEY} if merged else {})}
        schemas.append(table)
    return schemas


def root_table(table: str, tables: list[str]) -> str:
    """The root table a declared table nests under (itself for a root)."""
    parent = parent_table(table, tables)
    return table if parent is None else root_table(parent, tables)


def declare(system: str, resources: list[DltResource]) -> list[DltResource]:
    """Put the declared tables into the schema of the source being built (call inside a `@dlt.source`
    function); returns `resources` for the source to return."""
    schema: Schema = dlt.current.source_schema()
    for table in table_schemas(system, resources):
        schema.update_table(table)
    return resources


def create_missing_tables(pipeline: dlt.Pipeline, existing: set[str]) -> list[str]:
    """Create, with dlt's own DDL, the declared tables this run gave no row (`existing`: the tables the
    destination has): a first load of an empty system creates the same tables a full one does. Returns the
    tables created."""
    schema = pipeline.default_schema
    missing = [t["name"] for t in schema.data_tables() if t["name"] not in existing]
    if missing:
        if schema.is_modified:  # a run that extracted nothing leaves the declared tables unsaved
            pipeline.schemas.save_schema(schema)
        with pipeline.destination_client() as client:
            client.update_stored_schema(only_tables=missing, force=True)
    return missing
