"""Copy schema `fulfil` (canonical tables, ledgers, reconciled tables) from one warehouse to another, e.g. from the
embedded DuckDB file to PostgreSQL. The ledgers are what keep every effect from being sent twice, so they move
with the data; the raw tables do not (the new warehouse's first runs read every system again, rows merging by
key). A target that already holds rows is refused: nothing is ever merged into a warehouse in use.

    python -m fulfil_assets.copy_warehouse SOURCE_URL TARGET_URL
"""

from __future__ import annotations

import argparse
import sys

from fulfil_assets.warehouse_tables import ALL_TABLES, ensure_tables
from resources.warehouse import SCHEMA, WarehouseDb


def copy_warehouse(source: WarehouseDb, target: WarehouseDb) -> dict[str, int]:
    """Rows copied per table; ValueError when the target already holds rows in schema `fulfil`. The source is
    only read, under its writer lock (no fulfil process writes it meanwhile, so the copy is one consistent
    moment); a copy that fails part way leaves the target empty again."""
    ensure_tables(target)
    held = {t: n for t in ALL_TABLES if (n := int(target.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.{t}")["n"][0]))}
    if held:
        raise ValueError(f"the target already holds rows ({held}): copy only into a new, empty warehouse")
    copied: dict[str, int] = {}
    try:
        with source.writer(), source.session():
            for table in ALL_TABLES:  # a table an older warehouse never had is left empty
                rows = source.read(f"SELECT * FROM {SCHEMA}.{table}") if source.table_exists(table) else None
                copied[table] = target.write(table, rows, mode="append") if rows is not None else 0
    except BaseException:
        with target.begin() as conn:
            for table in copied:
                conn.exec_driver_sql(f"DELETE FROM {SCHEMA}.{table}")
        raise
    return copied


def main() -> int:
    """Command line: copy, print the rows per table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the warehouse's SQLAlchemy URL, e.g. duckdb:///data/warehouse.duckdb")
    parser.add_argument("target", help="the new warehouse's URL, e.g. postgresql+psycopg://user@host/db")
    args = parser.parse_args()
    try:
        copied = copy_warehouse(WarehouseDb(args.source), WarehouseDb(args.target))
    except ValueError as exc:
        print(f"copy_warehouse: {exc}", file=sys.stderr)
        return 2
    for table, rows in copied.items():
        print(f"{table:32s} {rows:9d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
