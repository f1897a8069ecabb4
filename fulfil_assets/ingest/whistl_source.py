"""dlt source for Whistl's outgoing files (stock snapshots `inv_*.csv`, despatch confirmations `shp_*.csv`) through
dlt's filesystem source, from a local folder or the SFTP drop. Every row of every file lands in a raw table,
all columns as text, keyed by file, content hash and row (a same-named re-send is a version of its own); a file
that cannot be taken in as a whole lands in `unreadable_files` with the reason. No Dagster here: it runs on its
own with any dlt pipeline."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dlt
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItemDict, filesystem
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.sftp import SFTPFileSystem

from fulfil_assets.csv_text import CsvError, read_csv
from fulfil_assets.ingest.columns import declare
from resources.file_drop import HostKeyCheck

# Files are re-listed this far back (seconds) so that a file landing with an older modification time than one
# already read (an upload that keeps the sender's mtime) is still taken in; a file listed again in a version
# already read is not read again (`file_reader`). What was read is remembered with dlt's state, saved as the
# extract ends: a load that then fails for good (not one a crash left pending, which the next run finishes) does
# not bring its files back; the next snapshot file replaces what they held.
LISTING_LAG_S = 3600
# Despatch files (`shp_*.csv`) are not loaded here: the despatch stage takes each one in whole, once, as it lands
# (`despatch/intake.py`); a second copy of their rows would be read by nobody.
FEEDS = {"stock_snapshots": "inv_*.csv"}
REQUIRED = {"stock_snapshots": ("sku", "on_hand", "allocated", "available", "snapshot_at")}


def drop_location(
    url: str, password: str = "", timeout_s: float = 30.0, host_key: str = "", known_hosts: str = ""
) -> tuple[str, AbstractFileSystem]:
    """A drop URL (`sftp://user@host:port/path` or a folder) as dlt's bucket URL and the filesystem to read it
    with: the local one, or an SFTP connection that checks the server's host key (`host_key` fingerprint or
    `known_hosts`) before it logs in, so the password never goes to a server that is not Whistl's."""
    parsed = urlparse(url)
    if parsed.scheme != "sftp":
        path = parsed.path if parsed.scheme == "file" else url
        return Path(path).resolve().as_uri(), LocalFileSystem()
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 22
    sftp = SFTPFileSystem(
        host,
        port=port,
        username=parsed.username,
        password=password,
        timeout=timeout_s,
        banner_timeout=timeout_s,
        allow_agent=False,
        look_for_keys=False,
        host_key_policy=HostKeyCheck(port, host_key, known_hosts),
        skip_instance_cache=True,
    )
    return f"sftp://{host}{parsed.path or '/'}", sftp


def file_rows(
    name: str, data: bytes, modified_at: datetime, required: tuple[str, ...] = ()
) -> Iterator[dict[str, Any]]:
    """One dict per CSV row, every column kept as text, with `_file_name`, `_row_no` (1 = first data row),
    `_file_modified_at` and `_file_hash`; values past the header land in `_extra_fields`. A file that cannot be
    taken in as a whole (not UTF-8, empty, a header only, columns missing: a `;`-separated file shows as one long
    column, or no line break after the last line: cut short, or still being written) yields one row for
    `unreadable_files` instead, with the reason."""
    digest = hashlib.sha256(data).hexdigest()
    file = {"_file_name": name, "_file_modified_at": modified_at, "_file_hash": digest}
    try:
        _, rows = read_csv(data, required, complete=True, rows_required=True)
    except CsvError as exc:
        yield dlt.mark.with_table_name({**file, "_row_no": 0, "reason": str(exc)}, "unreadable_files")
        return
    for row_no, row in enumerate(rows, start=1):
        record: dict[str, Any] = dict(row.cells)
        if row.extra:
            record["_extra_fields"] = ",".join(row.extra)
        yield {**record, **file, "_row_no": row_no}


def file_version(item: FileItemDict) -> str:
    """A listed file's version as the listing shows it: modification time and size."""
    return f"{item['modification_date'].isoformat()} {item.get('size_in_bytes')}"


def forget_old(read: dict[str, list[str]], newest: datetime) -> None:
    """Drop from `read` the versions modified more than twice `LISTING_LAG_S` before `newest`: the listing never
    shows them again, so the record of what was read stays the size of the lag window."""
    horizon = newest - timedelta(seconds=2 * LISTING_LAG_S)
    for name, versions in list(read.items()):
        kept = [v for v in versions if datetime.fromisoformat(v.split(" ", 1)[0]) >= horizon]
        if kept:
            read[name] = kept
        else:
            del read[name]


def file_reader(required: tuple[str, ...], read: dict[str, list[str]] | None = None) -> DltResource:
    """A transformer reading the rows of each listed file, requiring `required` columns. Each file (by name) is read
    once per version (`file_version`): the listing looks `LISTING_LAG_S` back, and every order sync and stock job
    read and merged again every snapshot of the last hour (59,400 rows by minute 30 of the live bench). `read`
    (name -> versions read) is the resource's dlt state; a test may pass its own."""

    @dlt.transformer(name="file_rows")
    def read_file_rows(items: list[FileItemDict]) -> Iterator[dict[str, Any]]:
        """The rows of each file not read before in this version; a file moved between the listing and the read
        (a run archiving it meanwhile) is skipped: it is listed again under `out/archive/`, and read there (a move
        keeps its name and time, so a file read before it moved is not read again)."""
        seen = read if read is not None else dlt.current.resource_state().setdefault("versions_read", {})
        for item in items:
            version = file_version(item)
            if version in seen.get(item["file_name"], []):
                continue
            try:
                data = item.read_bytes()
            except FileNotFoundError:
                continue
            yield from file_rows(item["file_name"], data, item["modification_date"], required)
            seen.setdefault(item["file_name"], []).append(version)
        if items:
            forget_old(seen, max(item["modification_date"] for item in items))

    return read_file_rows


@dlt.source(name="whistl")
def whistl_source(bucket_url: str = "", credentials: AbstractFileSystem | None = None) -> list[DltResource]:
    """Whistl's stock snapshot and despatch files under `out/` (and `out/archive/`, where processed files go),
    incremental on the files' modification time. Cells stay text (no timestamp detection): staging decides what
    a cell means and quarantines what it cannot read."""
    dlt.current.source_schema().remove_type_detection("iso_timestamp")
    resources = []
    for table, pattern in FEEDS.items():
        listing = filesystem(
            bucket_url=bucket_url,
            credentials=credentials,  # type: ignore[arg-type]
            file_glob=f"out/**/{pattern}",
            incremental=dlt.sources.incremental("modification_date", lag=LISTING_LAG_S),
        ).with_name(f"{table}_files")
        resources.append(
            (listing | file_reader(REQUIRED[table]))
            .with_name(table)
            .apply_hints(primary_key=("_file_name", "_file_hash", "_row_no"), write_disposition="merge")
        )
    return declare("whistl", resources)
