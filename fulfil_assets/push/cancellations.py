"""Cancellations: an order the customer cancelled after it reached the warehouse is cancelled there too, or, past
the picking cut-off, handed to the warehouse owner as `CANCEL_TOO_LATE`. Never silence.

Pure functions here; the assets in `push/cancel_assets.py` send the intents through the effect module (`cancellations`
ledger) and the despatch stage takes in what the warehouse answered.
"""

from __future__ import annotations

import json

import polars as pl

from fulfil_assets import effects
from fulfil_assets.push.common import INTENT_SCHEMA

# Submission statuses after which the WMS may hold the order: a cancellation must reach it.
AT_WMS = (effects.SENDING, effects.SENT, effects.ACKNOWLEDGED)


def cancellation_intents(cancelled: pl.DataFrame) -> pl.DataFrame:
    """Ledger rows for orders cancelled at source whose submission may be at the WMS (`cancelled`: order_key,
    order_ref, flow, wms, submission_status, cancelled_at); key `<wms>:cancel:<order_key>`, payload the cancel
    file's row."""
    rows = cancelled.filter(pl.col("submission_status").is_in(AT_WMS))
    if rows.is_empty():
        return pl.DataFrame(schema=INTENT_SCHEMA)
    asked = pl.col("cancelled_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ").fill_null("")
    return (
        rows.with_columns(asked.alias("_asked"))
        .select(
            pl.format("{}:cancel:{}", "wms", "order_key").alias("idempotency_key"),
            "order_key",
            "flow",
            pl.col("wms").alias("target"),
            "wms",
            "order_ref",
            pl.struct("order_ref", "_asked")
            .map_elements(
                lambda r: json.dumps([[r["order_ref"], "customer cancelled", r["_asked"]]]), return_dtype=pl.String
            )
            .alias("payload"),
        )
        .cast(INTENT_SCHEMA)
    )  # type: ignore[arg-type]


def too_late_exceptions(cancelled: pl.DataFrame) -> pl.DataFrame:
    """`CANCEL_TOO_LATE` for orders the customer cancelled after the warehouse had despatched them: nothing can be
    cancelled any more, a person must stop the parcel or arrange the return."""
    late = cancelled.filter(pl.col("submission_status") == "despatched")
    return late.select(
        "order_key",
        pl.lit("CANCEL_TOO_LATE").alias("reason_code"),
        pl.format(
            "customer cancelled order {} at {} after {} had despatched it: stop the parcel with the carrier or "
            "arrange a return",
            "order_ref",
            pl.col("cancelled_at").cast(pl.String),
            pl.col("wms").str.to_titlecase(),
        ).alias("detail"),
    )
