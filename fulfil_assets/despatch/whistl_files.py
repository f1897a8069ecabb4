"""Whistl despatch confirmations and rejections: parse, check against what was sent, plan tracking posts (pure)."""

from __future__ import annotations

import csv
import io

import polars as pl

from fulfil_assets.effects import to_payload

DESPATCH_FILE_COLUMNS = (
    "order_reference",
    "despatch_reference",
    "line_number",
    "sku",
    "quantity_ordered",
    "quantity_despatched",
    "carrier",
    "service_code",
    "tracking_number",
    "tracking_url",
    "parcel_number",
    "despatched_at",
    "partial_flag",
)
REJECTION_FILE_COLUMNS = ("order_reference", "reason_code", "detail")
ACK_FILE_COLUMNS = ("file_name", "order_reference", "status", "reason_code", "received_at")
DESPATCH_SCHEMA = {
    "wms": pl.String,
    "order_ref": pl.String,
    "despatch_ref": pl.String,
    "line_no": pl.Int32,
    "parcel_no": pl.Int32,
    "sku": pl.String,
    "quantity": pl.Int64,
    "carrier": pl.String,
    "service_code": pl.String,
    "tracking_number": pl.String,
    "tracking_url": pl.String,
    "despatched_at": pl.Datetime("us", "UTC"),
    "partial": pl.Boolean,
    "source_file": pl.String,
}
QUARANTINE_SCHEMA = {"source_file": pl.String, "line": pl.Int64, "reason": pl.String, "raw": pl.String}
# Whistl's rejection codes -> our reason codes (owner comes from the rules table).
WHISTL_REJECTIONS = {
    "SKU_UNKNOWN": "SKU_UNKNOWN_AT_WMS",
    "SKU_INVALID": "SKU_INVALID_CHARS",
    "PHONE_REQUIRED": "PHONE_MISSING",
    "SERVICE_CODE_INVALID": "SERVICE_UNMAPPED",
    "POSTCODE_REQUIRED": "POSTCODE_INVALID",
    "QUANTITY_INVALID": "QUANTITY_INVALID",
    "CANCEL_TOO_LATE": "CANCEL_TOO_LATE",
}


class FileFormatError(ValueError):
    """The whole file cannot be read (not CSV, wrong header, not UTF-8)."""


def _read_csv(data: bytes, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"not UTF-8 (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise FileFormatError(f"missing columns: {', '.join(missing)}")
    try:
        return list(reader)
    except csv.Error as exc:
        raise FileFormatError(f"line {reader.line_num}: {exc}") from None


def parse_despatch_file(data: bytes, source_file: str, wms: str = "whistl") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good despatch rows, and quarantined rows (file line, reason, raw text). Raises FileFormatError when the
    file as a whole is unreadable."""
    good, bad = [], []
    for line, row in enumerate(_read_csv(data, DESPATCH_FILE_COLUMNS), start=2):
        problems = []
        if None in row:
            problems.append("more cells than the header")
        ref, dref = (row.get("order_reference") or "").strip(), (row.get("despatch_reference") or "").strip()
        if not ref:
            problems.append("no order_reference")
        if not dref:
            problems.append("no despatch_reference")
        ints = {}
        for name in ("line_number", "quantity_despatched", "parcel_number"):
            value = (row.get(name) or "").strip()
            if not value.isdigit():
                problems.append(f"{name} {value!r} is not a whole number")
            else:
                ints[name] = int(value)
        tracking = (row.get("tracking_number") or "").strip()
        if ints.get("quantity_despatched", 0) > 0 and not tracking:
            problems.append("despatched quantity without a tracking number")
        when = (row.get("despatched_at") or "").strip()
        if problems:
            bad.append(
                {
                    "source_file": source_file,
                    "line": line,
                    "reason": "; ".join(problems),
                    "raw": ",".join(str(v) for v in row.values() if not isinstance(v, list)),
                }
            )
            continue
        good.append(
            {
                "wms": wms,
                "order_ref": ref,
                "despatch_ref": dref,
                "line_no": ints["line_number"],
                "parcel_no": ints["parcel_number"],
                "sku": row["sku"],
                "quantity": ints["quantity_despatched"],
                "carrier": row["carrier"],
                "service_code": row["service_code"],
                "tracking_number": tracking,
                "tracking_url": row.get("tracking_url") or "",
                "despatched_at": when,
                "partial": (row.get("partial_flag") or "").upper() == "Y",
                "source_file": source_file,
            }
        )
    rows = pl.DataFrame(good, schema={**DESPATCH_SCHEMA, "despatched_at": pl.String}).with_columns(
        pl.col("despatched_at").str.to_datetime(time_zone="UTC", strict=False)
    )
    bad_dates = rows.filter(pl.col("despatched_at").is_null())
    for r in bad_dates.iter_rows(named=True):
        bad.append(
            {
                "source_file": source_file,
                "line": None,
                "reason": "despatched_at is not an ISO timestamp",
                "raw": f"{r['order_ref']},{r['despatch_ref']},{r['line_no']}",
            }
        )
    return rows.filter(pl.col("despatched_at").is_not_null()), pl.DataFrame(bad, schema=QUARANTINE_SCHEMA)


def parse_rejection_file(data: bytes) -> pl.DataFrame:
    """`order_ref, wms_code, reason_code, detail` for each rejected order."""
    rows = _read_csv(data, REJECTION_FILE_COLUMNS)
    frame = pl.DataFrame(
        [{"order_ref": r["order_reference"], "wms_code": r["reason_code"], "detail": r["detail"]} for r in rows],
        schema={"order_ref": pl.String, "wms_code": pl.String, "detail": pl.String},
    )
    return frame.with_columns(
        pl.col("wms_code").replace_strict(WHISTL_REJECTIONS, default="WMS_REJECTED").alias("reason_code")
    )


def parse_ack_file(data: bytes, ack_file: str) -> pl.DataFrame:
    """What Whistl acknowledged receiving: `file_name, order_ref, status (ACCEPTED|REJECTED), detail, ack_file,
    received_at` per order of one of our order files."""
    rows = _read_csv(data, ACK_FILE_COLUMNS)
    frame = pl.DataFrame(
        [
            {
                "wms": "whistl",
                "file_name": r["file_name"].strip(),
                "order_ref": r["order_reference"].strip(),
                "status": r["status"].strip().upper(),
                "detail": r["reason_code"].strip() or None,
                "ack_file": ack_file,
                "received_at": r["received_at"].strip(),
            }
            for r in rows
        ],
        schema={c: pl.String for c in ("wms", "file_name", "order_ref", "status", "detail", "ack_file", "received_at")},
    )
    return frame.with_columns(pl.col("received_at").str.to_datetime(time_zone="UTC", strict=False))


def match_despatches(
    rows: pl.DataFrame, sent: pl.DataFrame, lines: pl.DataFrame, earlier: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Despatch rows matched to sent orders (with `order_key`), and problems: `DESPATCH_UNKNOWN_ORDER` for rows
    no sent order has, `DESPATCH_OVER_QUANTITY` when a line ships more than ordered (counting `earlier` rows)."""
    matched = rows.join(sent.select("order_ref", "order_key"), on="order_ref", how="left")
    unknown = matched.filter(pl.col("order_key").is_null())
    problems = [
        unknown.group_by("order_ref")
        .agg(pl.col("despatch_ref").first(), pl.len().alias("n"))
        .select(
            pl.format("whistl:{}", "order_ref").alias("order_key"),
            pl.lit("DESPATCH_UNKNOWN_ORDER").alias("reason_code"),
            pl.format(
                "despatch {} ({} rows) for order {} which fulfil never sent", "despatch_ref", "n", "order_ref"
            ).alias("detail"),
        )
    ]
    matched = matched.filter(pl.col("order_key").is_not_null())
    previous = earlier.select(matched.columns) if earlier.height else matched.clear()
    all_rows = pl.concat([previous, matched], how="vertical_relaxed").unique(
        ["wms", "despatch_ref", "line_no", "parcel_no"], keep="last"
    )
    shipped = all_rows.group_by("order_key", "line_no").agg(pl.col("quantity").sum().alias("shipped"))
    over = (
        shipped.join(lines.select("order_key", "line_no", "quantity"), on=["order_key", "line_no"], how="left")
        .filter(pl.col("quantity").is_null() | (pl.col("shipped") > pl.col("quantity")))
        .join(matched.select("order_key").unique(), on="order_key", how="semi")
    )
    problems.append(
        over.group_by("order_key")
        .agg(
            pl.format("line {}: shipped {} of {}", "line_no", "shipped", pl.col("quantity").fill_null(0))
            .str.join("; ")
            .alias("detail")
        )
        .select("order_key", pl.lit("DESPATCH_OVER_QUANTITY").alias("reason_code"), "detail")
    )
    return matched, pl.concat(problems)


def tracking_intents(despatched: pl.DataFrame, lines: pl.DataFrame, owners: pl.DataFrame) -> pl.DataFrame:
    """Ledger rows for each order's own system (`owners`: order_key, oms, source_order_id, flow): one tracking
    post per (order, despatch) with its parcels' numbers, and one `process` per order once every line has
    shipped in full. The payload says what to tell the system (kind, its order id, tracking numbers)."""
    cols = {
        "order_key": pl.String,
        "kind": pl.String,
        "despatch_ref": pl.String,
        "tracking_number": pl.String,
    }
    shipped = despatched.filter(pl.col("quantity") > 0)
    posts = (
        shipped.group_by("order_key", "despatch_ref")
        .agg(pl.col("tracking_number").unique(maintain_order=True).str.join(","))
        .select(
            "order_key",
            pl.lit("tracking").alias("kind"),
            "despatch_ref",
            "tracking_number",
        )
    )
    totals = despatched.group_by("order_key", "line_no").agg(pl.col("quantity").sum().alias("shipped"))
    complete = (
        lines.join(despatched.select("order_key").unique(), on="order_key", how="semi")
        .join(totals, on=["order_key", "line_no"], how="left")
        .group_by("order_key")
        .agg((pl.col("shipped").fill_null(0) >= pl.col("quantity")).all().alias("done"))
        .filter("done")
    )
    processes = complete.select(
        "order_key",
        pl.lit("process").alias("kind"),
        pl.lit("").alias("despatch_ref"),
        pl.lit(None, pl.String).alias("tracking_number"),
    )
    both = pl.concat([posts.cast(cols), processes.cast(cols)])  # type: ignore[arg-type]
    addressed = both.join(owners.select("order_key", "oms", "source_order_id", "flow"), on="order_key")
    return addressed.select(
        pl.when(pl.col("kind") == "tracking")
        .then(pl.format("{}:tracking:{}:{}", "oms", "order_key", "despatch_ref"))
        .otherwise(pl.format("{}:process:{}", "oms", "order_key"))
        .alias("idempotency_key"),
        "order_key",
        "kind",
        "despatch_ref",
        "tracking_number",
        "oms",
        "flow",
        pl.col("oms").alias("target"),
        pl.struct(pl.col("kind"), pl.col("source_order_id").alias("order_id"), "tracking_number")
        .map_elements(to_payload, return_dtype=pl.String)
        .alias("payload"),
    )
