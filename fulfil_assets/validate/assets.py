"""Validation assets: verdicts per order and rule, the exceptions people act on, and the GX record."""

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import phonenumbers
import polars as pl

from fulfil_assets import effects, routing
from fulfil_assets.config import FulfilConfig
from fulfil_assets.ledger import now_utc
from fulfil_assets.validate import mappings, rules, suites
from fulfil_assets.validate.gx_run import run_gx
from fulfil_assets.validate.mappings import load_bundles, load_locations, load_service_codes, load_variant_skus
from fulfil_assets.validate.rules import check_orders, merge_exceptions, prepare_lines, wms_ready_orders
from fulfil_assets.validate.suites import load_suite
from fulfil_assets.warehouse_tables import table_schema
from resources.warehouse import SCHEMA, Warehouse, WarehouseDb

RULES = ("sku_mapping", "sku_format", "sku_known", "quantity", "phone", "postcode", "address", "service", "location")
SENT = "(" + ", ".join(f"'{s}'" for s in effects.AT_TARGET) + ")"  # orders that (may) have reached their target
DOCS_KEPT = 48  # Data Docs of the newest runs; older ones are removed
WMS_TARGETS = ("whistl", "peoplevox")  # targets that pick physical stock: bundles go as their components


def _prune_docs(root: Path, keep: int) -> None:
    """Keep the Data Docs of the newest `keep` runs."""
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in runs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def docs_url(page: Path, docs_root: Path) -> str:
    """Where a Data Docs page is read from the UI: under `FULFIL_DATA_DOCS_URL` when the docs folder is served
    over http (the demo serves it), else the file itself."""
    base = os.environ.get("FULFIL_DATA_DOCS_URL")
    if not base:
        return page.resolve().as_uri()
    return f"{base.rstrip('/')}/{page.resolve().relative_to(docs_root.resolve()).as_posix()}"


class ValidationConfig(dg.Config):
    """Where the suites and mapping tables live, and whether to record a GX run beside the verdicts."""

    expectations_dir: str = "expectations"
    run_great_expectations: bool = True


ORDER_SYSTEM_TAG = "fulfil/order_system"  # a run tag: validate only this order system's orders (its order sync)


def orders_to_check(db: WarehouseDb, order_system: str | None, inputs: dict[str, str]) -> pl.DataFrame:
    """The open orders whose verdict can change: every one but those unchanged since they were checked against the
    same `inputs` (`verdict_inputs`, per target) and whose readiness still holds (an unpaid order being paid makes
    a passing one ready). A change after sending is an amendment to check; a SKU reaching the warehouse or a mapping
    fixed changes the inputs, so every held order of that target is checked again. With `order_system`, that
    system's orders, and any other system's changed since it was checked or whose inputs changed (every run stages
    every system's orders, and a sync sends each ready order of its targets, so none goes on a stale verdict). An
    order sync's work so grows with what changed, not with every order the warehouse holds or holds back."""
    unchanged = (
        f"SELECT 1 FROM {SCHEMA}.validated_orders v WHERE v.order_key = o.order_key AND v.content_hash = o.content_hash"
    )
    current = " ".join(f"WHEN '{target}' THEN '{digest}'" for target, digest in inputs.items())
    same = f"{unchanged} AND v.inputs_hash = CASE v.wms {current} ELSE NULL END"
    scope = "" if order_system is None else f" AND (o.source_system = :order_system OR NOT EXISTS ({same}))"
    return db.read(
        f"""SELECT o.* FROM {SCHEMA}.orders o WHERE o.status = 'open'{scope} AND NOT EXISTS (
                {same} AND v.ready = (v.passed AND COALESCE(o.paid, FALSE)))""",
        {} if order_system is None else {"order_system": order_system},
        schema=table_schema("orders"),
    )


MAPPING_FILES = ("service_codes.csv", "variant_skus.csv", "bundles.csv", "locations.csv")
# The code that turns an order into what its rules see and judges it (normalised phone and postcode, mapped SKUs), and
# the phone metadata it reads: a release that changes them checks every order again.
RULES_CODE = hashlib.sha256(
    b"".join(Path(m.__file__).read_bytes() for m in (rules, suites, mappings) if m.__file__)
    + phonenumbers.__version__.encode()
).hexdigest()


def verdict_inputs(db: WarehouseDb, fulfil: FulfilConfig, exp_dir: Path, target: str) -> str:
    """A hash of what a verdict for `target` rests on besides the order itself: the rules' code, its suite, the
    mapping tables, the SKUs its catalogue holds, the service codes its account offers, and the flows and routes.
    An order unchanged since it was checked against the same inputs keeps its verdict (`orders_to_check`)."""
    digest = hashlib.sha256(RULES_CODE.encode())
    for path in (exp_dir / f"{target}.json", *(exp_dir / name for name in MAPPING_FILES)):
        digest.update(path.read_bytes() if path.exists() else b"(none)")
        digest.update(b"\0")
    digest.update("\n".join(sorted(_catalogue(db, target)["sku"].drop_nulls().to_list())).encode())
    digest.update(b"\0" + "\n".join(sorted(account_services(db, target) or ())).encode())
    digest.update(b"\0" + fulfil.model_dump_json(include={"flows", "routes"}).encode())
    return digest.hexdigest()[:32]


def _write_target_lines(db: WarehouseDb, target: str, frame: pl.DataFrame, checked: list[str]) -> None:
    """The lines each order has for its target now (`target_order_lines`, what sending and amendments read), and
    the lines the target holds (`wms_order_lines`, what despatches are matched with): the same until the order is
    sent, after which only a confirmed amendment changes the second. The `checked` orders' lines are replaced, and
    those of orders no longer open are let go (the target's, once sent, are kept for matching despatches)."""
    sent = f"SELECT order_key FROM {SCHEMA}.wms_submissions WHERE wms = '{target}' AND status IN {SENT}"
    keys = ", ".join("'{}'".format(k.replace("'", "''")) for k in checked) or "NULL"
    still_open = f"SELECT order_key FROM {SCHEMA}.orders WHERE status = 'open'"
    scope = f"wms = '{target}' AND (order_key IN ({keys}) OR order_key NOT IN ({still_open}))"
    rows = frame.filter(pl.col("wms_line_no").is_not_null()).select(
        "order_key",
        pl.lit(target).alias("wms"),
        "wms_line_no",
        pl.col("line_no").alias("source_line_no"),
        pl.col("wms_sku").alias("sku"),
        "quantity",
    )
    db.write("target_order_lines", rows, mode="replace", replace_where=scope)
    unsent = rows.join(
        db.read(f"{sent} AND {db.any_of('order_key', 'keys')}", {"keys": checked}), on="order_key", how="anti"
    )
    # An order another run sends meanwhile (read unsent here) is outside the replace by then: the lines its target
    # holds stay as they are, whole (on PostgreSQL, where runs write at once).
    db.write(
        "wms_order_lines",
        unsent,
        mode="replace",
        replace_where=f"{scope} AND order_key NOT IN ({sent})",
        keep_whole=["order_key", "wms"],
    )


def _catalogue(db: WarehouseDb, target: str) -> pl.DataFrame:
    """The SKUs the target knows: a warehouse's stock catalogue, or Linnworks' stock items."""
    if target in WMS_TARGETS:
        return db.read(f"SELECT DISTINCT sku FROM {SCHEMA}.wms_stock WHERE wms = '{target}'")
    return db.read(f"SELECT DISTINCT sku FROM {SCHEMA}.oms_stock WHERE oms = '{target}'")


# What the target itself reports as its service codes: Linnworks' postal services, Peoplevox's service types.
ACCOUNT_SERVICES = {
    "linnworks": ("raw_linnworks", "postal_services", "postal_service_name"),
    "peoplevox": ("raw_peoplevox", "service_types", "name"),
}
# The raw tables an order sync reads from each target before validating: a warehouse's catalogue (staged as
# `wms_stock` in the same run) and the service codes the account offers. Linnworks' stock items are its stock job's
# to read (staged as `oms_stock`), like the rest of each target's tables.
TARGET_READS = {
    "whistl": ("stock_snapshots",),
    "peoplevox": ("available", ACCOUNT_SERVICES["peoplevox"][1]),
    "linnworks": (ACCOUNT_SERVICES["linnworks"][1],),
}


def account_services(db: WarehouseDb, target: str) -> set[str] | None:
    """The service codes the target's account reports (None: it cannot say, or has not been read yet)."""
    if target not in ACCOUNT_SERVICES:
        return None
    schema, table, column = ACCOUNT_SERVICES[target]
    if not db.table_exists(table, schema):
        return None
    names = db.read(f"SELECT DISTINCT {column} AS name FROM {schema}.{table}", schema={"name": pl.String})
    return set(names["name"].drop_nulls()) or None


def check_against_account(service_map: pl.DataFrame, target: str, known: set[str] | None, log: Any) -> pl.DataFrame:
    """The map without rows whose code the target's account does not offer (their orders are held as
    `SERVICE_UNMAPPED`, never sent with a code the target would refuse), each such row logged."""
    if known is None:
        return service_map
    unknown = service_map.filter((pl.col("wms") == target) & ~pl.col("service_code").is_in(list(known)))
    for system, method, code in unknown.select("system", "shipping_method", "service_code").iter_rows():
        log.error(
            f"service_codes.csv maps {system} '{method}' to {target} '{code}', which the {target} account does not "
            f"offer (it has: {', '.join(sorted(known))}): those orders are held"
        )
    return service_map.join(unknown, on=list(service_map.columns), how="anti")


@dataclass
class TargetResult:
    """One target's share of a validation run: the checked frame, failures, verdicts, ready orders, GX record."""

    target: str
    frame: pl.DataFrame
    failures: pl.DataFrame
    verdicts: pl.DataFrame
    validated: pl.DataFrame
    gx_disagree: dict[str, dict[str, int]]
    gx_errors: list[str]
    gx_docs: Path | None


def validate_target(
    db: WarehouseDb,
    target: str,
    orders: pl.DataFrame,
    lines: pl.DataFrame,
    exp_dir: Path,
    now: datetime,
    gx_docs_dir: Path | None,
    log: dg.DagsterLogManager,
    inputs_hash: str,
) -> TargetResult:
    """Check the orders routed to `target` (with their `flow`) against `expectations/<target>.json`; each validated
    row keeps the `inputs_hash` it was checked against."""
    suite = load_suite(target, exp_dir)
    catalogue = _catalogue(db, target)
    parameters = {} if catalogue.is_empty() else {"wms_catalogue": catalogue["sku"].to_list()}
    if catalogue.is_empty() and orders.height:
        log.warning(f"no {target} catalogue yet: SKU_UNKNOWN_AT_WMS is not checked for its orders this run")
    frame = prepare_lines(
        orders,
        lines,
        target,
        check_against_account(
            load_service_codes(exp_dir / "service_codes.csv"), target, account_services(db, target), log
        ),
        load_variant_skus(exp_dir / "variant_skus.csv"),
        load_bundles(exp_dir / "bundles.csv") if target in WMS_TARGETS else None,
        load_locations(exp_dir / "locations.csv"),
    )
    failures, verdicts = check_orders(frame, suite, parameters)
    ready = wms_ready_orders(orders, verdicts)
    failing = verdicts.filter(~pl.col("passed"))
    validated = frame.unique("order_key", keep="first").select(
        "order_key",
        pl.lit(target).alias("wms"),
        "flow",
        "service_code",
        "target_location",
        pl.col("phone_wms").alias("phone_normalised"),
        pl.col("postcode_norm").alias("postcode_normalised"),
        (~pl.col("order_key").is_in(failing["order_key"].implode())).alias("passed"),
        pl.col("order_key").is_in(ready["order_key"].implode()).alias("ready"),
        "content_hash",
        pl.lit(inputs_hash).alias("inputs_hash"),
        pl.lit(now).alias("validated_at"),
    )
    disagree: dict[str, dict[str, int]] = {}
    errors: list[str] = []
    docs = None
    if gx_docs_dir is not None and frame.height:
        gx = run_gx(frame, suite, parameters, gx_docs_dir / target)
        ours = dict(failures.group_by("expectation").len().iter_rows())
        disagree = {
            f"{target}:{i}": {"gx": n, "polars": ours.get(i, 0)}
            for i, n in gx.unexpected.items()
            if n != ours.get(i, 0)
        }
        errors, docs = [f"{target}: {e}" for e in gx.errors], gx.docs_index
    return TargetResult(target, frame, failures, verdicts, validated, disagree, errors, docs)


def validate_targets(
    db: WarehouseDb,
    fulfil: FulfilConfig,
    orders: pl.DataFrame,
    lines: pl.DataFrame,
    exp_dir: Path,
    now: datetime,
    gx_docs_dir: Path | None,
    log: Any,
    inputs: dict[str, str] | None = None,
) -> list[TargetResult]:
    """Route `orders` to their flows' targets and check each target's share against its suite (`inputs`: each
    target's `verdict_inputs`, worked out here where not given)."""
    routes = routing.order_routes(orders, fulfil)
    if inputs is None:
        inputs = {target: verdict_inputs(db, fulfil, exp_dir, target) for target in routing.targets(fulfil)}
    return [
        validate_target(
            db,
            target,
            orders.join(routes.filter(pl.col("target") == target).select("order_key", "flow"), on="order_key"),
            lines,
            exp_dir,
            now,
            gx_docs_dir,
            log,
            inputs[target],
        )
        for target in routing.targets(fulfil)
    ]


def record_validation(db: WarehouseDb, results: list[TargetResult], now: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write what validation found for the orders it checked: each order's verdict per rule, its validated row,
    its lines for its target, and its exceptions (failures opened, passes resolving open ones). Returns the
    verdicts and validated rows."""
    verdicts = pl.concat([r.verdicts for r in results])
    validated = pl.concat([r.validated for r in results])
    db.write(
        "order_verdicts",
        verdicts.with_columns(pl.lit(now).alias("checked_at")),
        mode="upsert",
        key=["order_key", "rule"],
    )
    db.write("validated_orders", validated, mode="upsert", key=["order_key"])
    checked = validated["order_key"].to_list()  # every target's: an order routed elsewhere lets its old lines go
    for r in results:
        _write_target_lines(db, r.target, r.frame, checked)
    existing = db.read(
        f"SELECT * FROM {SCHEMA}.order_exceptions WHERE rule NOT IN ('wms_acceptance', 'despatch_match') "
        f"AND {db.any_of('order_key', 'keys')}",
        {"keys": checked},
    )
    db.write(
        "order_exceptions",
        merge_exceptions(existing, verdicts, now),
        mode="upsert",
        key=["order_key", "rule"],
        update=["reason_code", "detail", "owner", "last_seen", "resolved_at"],
    )
    return verdicts, validated


def build_validation(fulfil: FulfilConfig) -> dg.AssetsDefinition:
    """The validation multi-asset for the targets of the configured flows."""

    @dg.multi_asset(
        name="validation",
        group_name="validate",
        specs=[
            dg.AssetSpec(
                "validated_orders",
                deps=["orders", "order_lines", "wms_stock", "oms_stock"],
                description="Each open order's flow and its verdict per rule of its target's suite "
                "(`expectations/<target>.json`: Whistl, Peoplevox, or Linnworks for Shopify orders), the values "
                "the target will get (normalised phone and postcode, exact service code, bundles expanded into "
                "component lines for a warehouse), and whether it is ready to send.",
            ),
            dg.AssetSpec(
                "order_exceptions",
                deps=["orders"],
                description="Orders held back, one row per failing rule: reason code, a detail a person can "
                "act on, owner (warehouse, office, cx), first and last seen. An exception "
                "resolves itself when a later run finds the order passes.",
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                f"rule_{r}",
                asset="validated_orders",
                description=f"Open orders failing the `{r}` rule (they are held back)",
            )
            for r in RULES
        ]
        + [
            dg.AssetCheckSpec(
                "great_expectations_agrees",
                asset="validated_orders",
                description="GX's own unexpected counts equal the polars verdicts, expectation by expectation",
            )
        ],
    )
    def validation(
        context: dg.AssetExecutionContext, config: ValidationConfig, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Check the open orders whose verdict can still change (of the run's order system, in its order sync)
        against their target's suite; one bad line holds the whole order."""
        with warehouse.session() as db:
            now, started = now_utc(), time.monotonic()
            exp_dir = Path(config.expectations_dir)
            order_system = context.run.tags.get(ORDER_SYSTEM_TAG)
            inputs = {target: verdict_inputs(db, fulfil, exp_dir, target) for target in routing.targets(fulfil)}
            staged = orders_to_check(db, order_system, inputs)
            lines = db.read(  # these orders' lines only: the table holds every line ever staged
                f"SELECT * FROM {SCHEMA}.order_lines WHERE {db.any_of('order_key', 'keys')}",
                {"keys": staged["order_key"].to_list()},
                schema=table_schema("order_lines"),
            )
            docs_root = Path(os.environ.get("FULFIL_DATA_DIR", "data")) / "gx_docs"
            gx_docs = docs_root / context.run_id if config.run_great_expectations else None
            read_at = time.monotonic()
            results = validate_targets(db, fulfil, staged, lines, exp_dir, now, gx_docs, context.log, inputs)
            checked_at = time.monotonic()
            if config.run_great_expectations and docs_root.exists():
                _prune_docs(docs_root, keep=DOCS_KEPT)
            verdicts, validated = record_validation(db, results, now)
            failing = verdicts.filter(~pl.col("passed"))
            seconds = {  # where a slow validation spends its time (the run's log and the materialization say)
                "read": round(read_at - started, 2),
                "check": round(checked_at - read_at, 2),
                "write": round(time.monotonic() - checked_at, 2),
            }
            context.log.info(f"validation of {staged.height} order(s) took {seconds}")

            by_reason = dict(failing.group_by("reason_code").len().sort("reason_code").iter_rows())
            gx_meta: dict[str, dg.MetadataValue] = {}
            if config.run_great_expectations:
                disagree = {k: v for r in results for k, v in r.gx_disagree.items()}
                errors = [e for r in results for e in r.gx_errors]
                for r in results:
                    if r.gx_docs:
                        key = "gx_data_docs" if r.target == "whistl" else f"gx_data_docs_{r.target}"
                        gx_meta[key] = dg.MetadataValue.url(docs_url(r.gx_docs, docs_root))
                yield dg.AssetCheckResult(
                    check_name="great_expectations_agrees",
                    asset_key="validated_orders",
                    passed=not disagree and not errors,
                    description="Great Expectations and fulfil's rules hold the same orders back."
                    if not disagree and not errors
                    else f"Great Expectations disagrees with fulfil's rules on {len(disagree)} rule(s)"
                    f"{f' and raised {len(errors)} error(s)' if errors else ''}: the data team compares the two.",
                    metadata={
                        "disagreements": dg.MetadataValue.json(disagree),
                        "gx_errors": dg.MetadataValue.json(errors),
                    },
                )
            else:
                yield dg.AssetCheckResult(
                    check_name="great_expectations_agrees",
                    asset_key="validated_orders",
                    passed=True,
                    description="Not run: `run_great_expectations` is off in fulfil.yaml.",
                    metadata={"skipped": "run_great_expectations is off"},
                )
            ran = set(verdicts["rule"].unique().to_list())
            held_refs = db.read(  # every open order a rule holds, whichever run checked it last
                f"SELECT e.rule, o.order_ref FROM {SCHEMA}.order_exceptions e JOIN {SCHEMA}.orders o "
                "USING (order_key) WHERE e.resolved_at IS NULL AND o.status = 'open' ORDER BY o.order_ref",
                schema={"rule": pl.String, "order_ref": pl.String},
            )
            for rule in RULES:
                mine = held_refs.filter(pl.col("rule") == rule)
                examples = mine["order_ref"].drop_nulls().head(3).to_list()
                yield dg.AssetCheckResult(
                    check_name=f"rule_{rule}",
                    asset_key="validated_orders",
                    passed=mine.is_empty(),
                    severity=dg.AssetCheckSeverity.WARN,
                    description=(
                        f"{mine.height} order(s) held by the {rule} rule, e.g. {', '.join(examples)}: see "
                        "order_exceptions for the reason and who fixes it"
                        if mine.height
                        else f"no order held by the {rule} rule"
                        if rule in ran
                        else f"no open order held by the {rule} rule; no order reached it this run"
                    ),
                    metadata={
                        "failing_orders": mine.height,
                        "evaluated": dg.MetadataValue.text("yes" if rule in ran else "no: no order to check"),
                        "example_order_refs": dg.MetadataValue.json(mine["order_ref"].drop_nulls().head(10).to_list()),
                    },
                )
            per_target = {f"ready_{r.target}": int(r.validated["ready"].sum()) for r in results}
            ready = int(validated["ready"].sum())
            held = validated.height - int(validated["passed"].sum())
            not_ready = validated.height - ready - held
            yield dg.MaterializeResult(
                asset_key="validated_orders",
                metadata={
                    # checked = ready + held by a rule + passed but not (yet) to send: unpaid, or no longer open
                    "order_system": order_system or "all",
                    "seconds": dg.MetadataValue.json(seconds),
                    "orders_checked": validated.height,
                    "ready": ready,
                    "held_by_rules": held,
                    "passed_not_ready": not_ready,
                    "wms_lines_checked": sum(r.frame.height for r in results),
                    **per_target,
                    **{f"failing_{reason}": int(n) for reason, n in by_reason.items()},
                    "summary": dg.MetadataValue.md(
                        f"{validated.height} orders checked ({order_system or 'every order system'}; orders "
                        f"at their target and unchanged keep their verdict): **{ready} ready**, {held} held by a "
                        f"rule, {not_ready} passed but unpaid or no longer open."
                    ),
                    **gx_meta,
                },
            )
            open_ex = db.read(
                f"SELECT order_key, reason_code, owner, detail, last_seen FROM {SCHEMA}.order_exceptions "
                "WHERE resolved_at IS NULL ORDER BY last_seen DESC, order_key LIMIT 20"
            )
            table = "| order | reason | owner | detail |\n|---|---|---|---|\n" + "\n".join(
                f"| {r['order_key']} | {r['reason_code']} | {r['owner']} | {r['detail']} |"
                for r in open_ex.iter_rows(named=True)
            )
            open_counts = db.read(
                f"SELECT reason_code, owner, COUNT(*) AS n FROM {SCHEMA}.order_exceptions WHERE resolved_at IS NULL "
                "GROUP BY reason_code, owner",
                schema={"reason_code": pl.String, "owner": pl.String, "n": pl.Int64},
            )
            per_reason = open_counts.group_by("reason_code").agg(pl.col("n").sum()).sort("reason_code")
            per_owner = open_counts.group_by("owner").agg(pl.col("n").sum()).sort("owner")
            yield dg.MaterializeResult(
                asset_key="order_exceptions",
                metadata={
                    "open_exceptions": int(open_counts["n"].sum()),
                    **{f"open_{reason}": int(n) for reason, n in per_reason.iter_rows()},
                    **{f"open_for_{owner}": int(n) for owner, n in per_owner.iter_rows()},
                    "newest": dg.MetadataValue.md(table),
                },
            )

    return validation
