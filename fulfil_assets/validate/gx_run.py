"""Run a suite with Great Expectations itself (summary level) on the frame polars checked.

No maintained Dagster adapter supports GX 1.x, so this is a thin one: an ephemeral context, the suite from
`expectations/`, a pandas batch (GX has no polars backend; the frame is converted at this boundary), and the
per-expectation unexpected counts as plain ints. GX is imported lazily so the code location loads fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from fulfil_assets.validate.data_docs import make_self_contained
from fulfil_assets.validate.suites import failure_expr


@dataclass
class GxResult:
    """What GX said: unexpected counts per expectation index, overall success, where the Data Docs are."""

    unexpected: dict[int, int]
    success: bool
    evaluated_rows: int
    docs_index: Path | None = None
    errors: list[str] = field(default_factory=list)


def run_gx(
    frame: pl.DataFrame,
    suite: dict[str, Any],
    parameters: dict[str, Any],
    docs_dir: Path | None = None,
    result_format: str | dict[str, Any] = "SUMMARY",
) -> GxResult:
    """Validate `frame` with GX; expectations whose parameter is absent are left out (as polars does).
    `result_format="COMPLETE"` (or GX's dict form, e.g. with `unexpected_index_column_names`) makes GX list
    every failing row: the per-row mode."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    gx_suite = gx.ExpectationSuite(name=suite["name"])
    columns: set[str] = set()
    for i, exp in enumerate(suite["expectations"]):
        if failure_expr(exp, parameters) is None:
            continue
        columns.add(exp["kwargs"]["column"])
        gx_suite.add_expectation_configuration(
            ExpectationConfiguration(type=exp["type"], kwargs=exp["kwargs"], meta={**exp["meta"], "index": i})
        )
    gx_suite = context.suites.add(gx_suite)
    batch = (
        context.data_sources.add_pandas("fulfil")
        .add_dataframe_asset("order_lines")
        .add_batch_definition_whole_dataframe("run")
    )
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="orders", data=batch, suite=gx_suite))
    actions = []
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name="fulfil",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["fulfil"]))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(name="orders", validation_definitions=[definition], actions=actions, result_format=result_format)
    )
    if isinstance(result_format, dict):
        columns.update(result_format.get("unexpected_index_column_names", []))
    subset = frame.select(sorted(columns))
    pdf = pd.DataFrame({c: pd.Series(subset[c].to_list(), dtype="object") for c in subset.columns})
    run = checkpoint.run(batch_parameters={"dataframe": pdf}, expectation_parameters=parameters)
    result = next(iter(run.run_results.values()))
    unexpected, errors = {}, []
    for r in result.results:
        index = int(r.expectation_config.meta["index"])
        if r.exception_info and r.exception_info.get("raised_exception"):
            errors.append(f"expectation {index}: {r.exception_info.get('exception_message')}")
        unexpected[index] = int(r.result.get("unexpected_count") or 0)
    index = make_self_contained(docs_dir) if docs_dir is not None else None  # no CDN: readable with no way out
    return GxResult(unexpected, bool(result.success), frame.height, index, errors)
