"""The `audit_report` asset and `audit_job`: read every configured system (ingest), stage what was read, and
report what would hold orders back, what nobody sells, where stock would oversell and how often each sync can
safely run, sending nothing. `fulfil audit` runs the job with every flow in shadow mode, so that not even a
Whistl snapshot file is moved."""

import os
from pathlib import Path

import dagster as dg

from fulfil_assets.audit.read import run_audit
from fulfil_assets.audit.replay import parse_moment, replay_window
from fulfil_assets.audit.report import as_html, as_json, as_markdown, headline
from fulfil_assets.config import FLOW_SYSTEMS, FulfilConfig
from fulfil_assets.ingest.assets import RAW_ASSETS, READ_MINUTES_TAG, ingest_group
from fulfil_assets.ledger import now_utc
from fulfil_assets.plan import due_effects, holding, plan_text
from fulfil_assets.schedules import BACKGROUND
from resources.warehouse import Warehouse

STAGED = ("orders", "order_lines", "oms_stock", "wms_stock")


class AuditConfig(dg.Config):
    """The period the audit covers and where the rules and mapping tables live."""

    days: float = 30.0
    stale_days: float = 7.0
    expectations_dir: str = "expectations"


class ReplayConfig(dg.Config):
    """The window replayed (ISO dates or date-times, UTC unless they say otherwise), the flow (all if empty) and
    the rules and mapping tables to validate with."""

    start: str
    end: str
    flow: str = ""
    expectations_dir: str = "expectations"


def audit_folder() -> Path:
    """Where the report is written: `$FULFIL_DATA_DIR/audit/` (`audit.html`, `audit.json`)."""
    return Path(os.environ.get("FULFIL_DATA_DIR", "data")) / "audit"


def build_defs(config: FulfilConfig) -> dg.Definitions:
    """The audit asset and the job that reads, stages and reports."""
    fulfil = config  # (the asset's own `config` is its run config)

    @dg.asset(
        name="audit_report",
        group_name="audit",
        deps=list(STAGED),
        kinds={"polars", "html"},
        description="The system audit: catalogue gaps, shipping and location mappings, orders against each rule, "
        "stock shown beside what may be sold, and each sync's fastest safe interval within the rate limits "
        "(`$FULFIL_DATA_DIR/audit/audit.html` and `.json`). Read-only: nothing is sent.",
    )
    def audit_report(
        context: dg.AssetExecutionContext, config: AuditConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        """Compute the audit from what was staged and write the report."""
        with warehouse.session() as db:
            audit = run_audit(
                db, fulfil, Path(config.expectations_dir), now_utc(), config.days, config.stale_days, context.log
            )
        folder = audit_folder()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "audit.html").write_text(as_html(audit))
        (folder / "audit.json").write_text(as_json(audit))
        figures = headline(audit)
        return dg.MaterializeResult(
            metadata={
                "summary": dg.MetadataValue.md(as_markdown(audit)),
                "report": dg.MetadataValue.path(str((folder / "audit.html").resolve())),
                "json": dg.MetadataValue.path(str((folder / "audit.json").resolve())),
                **{k: v for k, v in figures.items() if isinstance(v, int)},
                "catalogue_problems": dg.MetadataValue.json(figures["catalogue_problems"]),
            }
        )

    systems = sorted({s for f in config.flows for s in FLOW_SYSTEMS[f]} & set(RAW_ASSETS))
    job = dg.define_asset_job(
        "audit_job",
        selection=dg.AssetSelection.groups(*(ingest_group(s) for s in systems))
        | dg.AssetSelection.assets(*STAGED, "audit_report"),
        tags={**BACKGROUND, READ_MINUTES_TAG: "all"},  # every change of the period, however long that takes
        description="Read every configured system, stage what was read and write the audit report; sends nothing "
        "(`fulfil audit` runs it with every flow in shadow mode, so no file is moved either).",
    )

    @dg.asset(
        name="go_live_plan",
        group_name="audit",
        kinds={"polars"},
        description="What the next live run would send, per flow and target (orders to send, amend or cancel, "
        "stock levels from -> to, tracking posts due) and the exceptions holding orders back, read from the "
        "ledgers and sending nothing: for a flow in shadow mode, the go-live check (`fulfil plan` prints it).",
    )
    def go_live_plan(warehouse: Warehouse) -> dg.MaterializeResult:
        """Record the plan as it stands (the ledgers' due rows), sending nothing."""
        db = warehouse.get_db()
        due, held = due_effects(db), holding(db)
        per_flow = {f"{f} {w}": n for f, w, n in due.group_by("flow", "what").len().sort("flow", "what").iter_rows()}
        return dg.MaterializeResult(
            metadata={
                "plan": dg.MetadataValue.md(f"```\n{plan_text(due, held)}```"),
                "effects_due": due.height,
                "orders_held": int(held["orders"].sum() or 0),
                "due_per_flow": dg.MetadataValue.json(per_flow),
            }
        )

    plan_job = dg.define_asset_job(
        "plan_job",
        selection=dg.AssetSelection.assets("go_live_plan"),
        tags=BACKGROUND,
        description="Record what the next live run would send (the go-live check of a flow in shadow mode).",
    )

    @dg.asset(
        name="replayed_orders",
        group_name="audit",
        deps=["orders", "order_lines"],
        kinds={"polars"},
        description="The orders of a window sent through the ledgers again after a fix, calling no system: they are "
        "validated with today's rules and mapping tables and each one ready now is recorded in `wms_submissions` by "
        "its usual key, so the next push run sends what is newly due and nothing already recorded (`fulfil replay "
        "--from --to [--flow]`).",
    )
    def replayed_orders(
        context: dg.AssetExecutionContext, config: ReplayConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        """Record what the window's ready orders are due, per flow, and say what was released and what is still
        held."""
        flows = [config.flow] if config.flow else list(fulfil.flows)
        unknown = set(flows) - set(fulfil.flows)
        if unknown:
            raise dg.Failure(f"replay: {sorted(unknown)} is not a flow of fulfil.yaml ({', '.join(fulfil.flows)})")
        start, end = parse_moment(config.start), parse_moment(config.end)
        with warehouse.session() as db:
            per_flow = replay_window(db, fulfil, start, end, flows, Path(config.expectations_dir), context.log)
        context.log.info(f"replayed {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}: {per_flow.to_dicts()}")
        return dg.MaterializeResult(
            metadata={
                "window": f"{start.isoformat()} to {end.isoformat()}",
                "released": int(per_flow["released"].sum()),
                "still_held": int(per_flow["still_held"].sum()),
                "per_flow": dg.MetadataValue.json(per_flow.to_dicts()),
            }
        )

    replay_job = dg.define_asset_job(
        "replay_job",
        selection=dg.AssetSelection.assets("orders", "order_lines", "replayed_orders"),
        tags=BACKGROUND,
        description="Stage the raw tables, validate a window's orders with today's rules and mappings and record what "
        "they are due (`replayed_orders`), calling no system: the next push run sends it.",
    )
    return dg.Definitions(assets=[audit_report, go_live_plan, replayed_orders], jobs=[job, plan_job, replay_job])
