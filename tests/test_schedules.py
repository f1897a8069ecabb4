"""Every recurring job waits for its last run: a schedule tick that finds one still queued or going is skipped with
a reason naming it, so slow runs never pile up and hold a system's pool against other flows' runs. Sensors ask for
no second run while one of the same job is still waiting to start; every job runs in a lane whose priority and
bound keep latency runs first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from flow_helpers import emulator_config, tick_sensor

from emulators.server import Emulators
from fulfil_assets import effects
from fulfil_assets.config import load_config
from fulfil_assets.definitions import build_definitions
from fulfil_assets.warehouse_tables import FulfilWarehouse

ROOT = Path(__file__).resolve().parent.parent
LATENCY_JOBS = {"despatch_job", "peoplevox_despatch_job", "tracking_job", "despatch_backlog_job"} | {
    f"{oms}_tracking_job" for oms in ("linnworks", "cin7", "shopify", "bigcommerce")
}


def _tick(
    schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, warehouse: FulfilWarehouse | None = None
) -> dg.ScheduleExecutionData:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime.now(UTC),
        resources={"warehouse": warehouse} if warehouse is not None else None,
    ) as context:  # (a context with resources is closed, or the instance it entered stays current)
        return schedule.evaluate_tick(context)


def test_each_schedule_skips_while_its_jobs_last_run_is_unfinished_and_fires_once_it_ends(tmp_path: Path) -> None:
    defs = build_definitions(load_config(Path("fulfil.yaml")))
    schedules = list(defs.schedules or [])
    # A tracking post due to every order system, through the effect module: each tracking schedule has work.
    warehouse = FulfilWarehouse(url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    due = [
        {"idempotency_key": f"t:{oms}", "order_key": f"{oms}:1", "payload": "{}", "oms": oms, "despatch_ref": "D1"}
        for oms in ("linnworks", "cin7", "shopify", "bigcommerce")
    ]
    effects.intend(warehouse.get_db(), "tracking_posts", pl.DataFrame(due))
    per_system = {f"{oms}_order_sync_schedule" for oms in ("linnworks", "cin7", "shopify", "bigcommerce")}
    assert per_system | {"linnworks_cancellation_schedule", "reconcile_schedule"} <= {s.name for s in schedules}
    instance = dg.DagsterInstance.local_temp(str(tmp_path))
    for schedule in schedules:
        assert isinstance(schedule, dg.ScheduleDefinition)
        assert len(_tick(schedule, instance, warehouse).run_requests or []) == 1, schedule.name

        for status in (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED):
            run = instance.add_run(dg.DagsterRun(job_name=schedule.job_name, run_id=str(uuid.uuid4()), status=status))
            tick = _tick(schedule, instance, warehouse)
            if schedule.name in per_system and status == dg.DagsterRunStatus.STARTED:
                # An order sync is pipelined: beside one run going, the next starts (it reads once that one has
                # read, while that one sends); beside two, none.
                assert len(tick.run_requests or []) == 1, f"{schedule.name} skipped beside one run going"
                second = instance.add_run(
                    dg.DagsterRun(job_name=schedule.job_name, run_id=str(uuid.uuid4()), status=status)
                )
                tick = _tick(schedule, instance, warehouse)
                assert not tick.run_requests and second.run_id in (tick.skip_message or ""), tick.skip_message
                instance.report_run_failed(second)
            else:
                assert not tick.run_requests, f"{schedule.name} fired beside a {status.value} run"
                assert run.run_id in (tick.skip_message or ""), tick.skip_message
            instance.report_run_failed(run)

        assert len(_tick(schedule, instance, warehouse).run_requests or []) == 1, f"{schedule.name} stayed skipped"


def test_an_order_sync_lets_another_job_waiting_for_its_pool_go_first(tmp_path: Path) -> None:
    """Beside one Cin7 order sync going, the next starts, unless another job's step (a stock job's Cin7 read) waits
    for the Cin7 pool: the queue gives a freed pool to the highest priority, so order syncs always waiting for it
    would hold that job off for good."""
    defs = build_definitions(load_config(Path("fulfil.yaml")))
    schedule = defs.resolve_schedule_def("cin7_order_sync_schedule")
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("cin7", 1)
        going = instance.add_run(
            dg.DagsterRun(
                job_name="cin7_order_sync_job",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.STARTED,
                tags=defs.resolve_job_def("cin7_order_sync_job").tags,
            )
        )
        assert storage.claim_concurrency_slot("cin7", going.run_id, "cin7_raw", 5).is_claimed
        assert len(_tick(schedule, instance).run_requests or []) == 1  # the next reads once this one has read
        # A cancellation job's read waiting goes first anyway (priority 8): the next order sync still starts.
        cancels = instance.add_run(
            dg.DagsterRun(
                job_name="cin7_cancellation_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
            )
        )
        assert not storage.claim_concurrency_slot("cin7", cancels.run_id, "cin7_raw", 8).is_claimed
        assert len(_tick(schedule, instance).run_requests or []) == 1
        stock = instance.add_run(
            dg.DagsterRun(
                job_name="cin7_whistl_stock_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
            )
        )
        assert not storage.claim_concurrency_slot("cin7", stock.run_id, "cin7_raw", 1).is_claimed
        held = _tick(schedule, instance)
        assert not held.run_requests and stock.run_id in (held.skip_message or ""), held.skip_message
        assert "cin7_whistl_stock_job" in (held.skip_message or "")
        # The pool goes to the cancellation job's read (the higher priority), then to the stock job's.
        storage.free_concurrency_slot_for_step(going.run_id, "cin7_raw")
        assert not storage.claim_concurrency_slot("cin7", stock.run_id, "cin7_raw", 1).is_claimed
        assert storage.claim_concurrency_slot("cin7", cancels.run_id, "cin7_raw", 8).is_claimed
        storage.free_concurrency_slot_for_step(cancels.run_id, "cin7_raw")
        assert storage.claim_concurrency_slot("cin7", stock.run_id, "cin7_raw", 1).is_claimed
        assert len(_tick(schedule, instance).run_requests or []) == 1
        # The same for a pool of another system an order sync reads: Whistl's catalogue (the stock job's next read).
        storage.set_concurrency_slots("whistl", 1)
        assert storage.claim_concurrency_slot("whistl", str(uuid.uuid4()), "whistl_raw", 10).is_claimed
        assert not storage.claim_concurrency_slot("whistl", stock.run_id, "whistl_raw", 1).is_claimed
        held = _tick(schedule, instance)
        assert not held.run_requests and "whistl pool" in (held.skip_message or ""), held.skip_message


def test_each_order_system_syncs_in_its_own_job_and_schedules_of_one_interval_start_apart() -> None:
    defs = build_definitions(load_config(Path("fulfil.yaml")))
    jobs = ("cin7_order_sync_job", "linnworks_order_sync_job", "shopify_order_sync_job")
    selected = {job: defs.resolve_job_def(job).asset_layer.selected_asset_keys for job in jobs}
    raw = {job: {k.path[0] for k in keys if k.path[0].startswith("raw_")} for job, keys in selected.items()}
    assert raw["cin7_order_sync_job"] == {"raw_cin7", "raw_whistl"}  # a Cin7 backlog holds no other system's orders
    assert raw["linnworks_order_sync_job"] == {"raw_linnworks", "raw_whistl", "raw_peoplevox"}
    assert raw["shopify_order_sync_job"] == {"raw_shopify", "raw_linnworks"}
    # From its own system an order sync reads the order tables only; stock and catalogue are the stock job's.
    cin7 = {k.path[1] for k in selected["cin7_order_sync_job"] if k.path[0] == "raw_cin7"}
    assert cin7 == {"sale_list", "sales"}
    shopify = {k.path[1] for k in selected["shopify_order_sync_job"] if k.path[0] == "raw_shopify"}
    assert shopify == {"orders", "fulfillment_orders"}

    # From a target it reads what validation needs now: a warehouse's catalogue (staged as `wms_stock` in the run)
    # and the service codes the account offers. Linnworks' stock items (its catalogue, staged as `oms_stock`) and
    # Peoplevox's other tables are other jobs' to read: a Shopify sync never reads Linnworks' orders.
    def read_from(job: str, system: str) -> set[str]:
        return {k.path[1] for k in selected[job] if k.path[0] == f"raw_{system}"}

    assert read_from("shopify_order_sync_job", "linnworks") == {"postal_services"}
    assert read_from("linnworks_order_sync_job", "peoplevox") == {"available", "service_types"}
    assert read_from("linnworks_order_sync_job", "whistl") == read_from("cin7_order_sync_job", "whistl")
    assert read_from("cin7_order_sync_job", "whistl") == {"stock_snapshots"}
    every_15 = [s for s in defs.schedules or [] if s.cron_schedule.endswith("/15 * * * *")]
    assert len(every_15) >= 6 and len({s.cron_schedule for s in every_15}) > 1, [s.cron_schedule for s in every_15]


def test_latency_jobs_come_first_and_the_other_lanes_are_bounded(tmp_path: Path) -> None:
    config = load_config(Path("fulfil.yaml"))
    defs = build_definitions(config)
    jobs = {j.name: j.tags for j in defs.resolve_all_job_defs() if not j.name.startswith("__")}
    assert all("fulfil/lane" in tags for tags in jobs.values()), jobs
    assert "fulfil/warehouse" not in {k for tags in jobs.values() for k in tags}  # no run holds the warehouse
    latency = {name for name, tags in jobs.items() if tags["fulfil/lane"] == "latency"}
    assert LATENCY_JOBS <= latency
    lowest_latency = min(int(jobs[j]["dagster/priority"]) for j in latency)
    assert all(int(t["dagster/priority"]) < lowest_latency for n, t in jobs.items() if n not in latency)
    cancelling = {name for name, tags in jobs.items() if tags["fulfil/lane"] == "cancellations"}
    per_system = {f"{oms}_cancellation_job" for oms in ("linnworks", "cin7", "shopify", "bigcommerce")}
    assert cancelling == per_system  # one order system's slow reads never hold another's cancellations
    selected = defs.resolve_job_def("cin7_cancellation_job").asset_layer.selected_asset_keys
    assert {k.path[-1] for k in selected if k.path[-1].endswith("_cancellations")} == {"whistl_cancellations"}
    # An order sync reads its interval's worth of details (two minutes at least); the audit reads every change.
    interval = config.schedules.order_sync_minutes
    assert {jobs[j]["fulfil/read_minutes"] for j in jobs if j.endswith("_order_sync_job")} == {str(max(2.0, interval))}
    assert jobs["audit_job"]["fulfil/read_minutes"] == "all"
    # A cancellation run sends no orders: it reads few details, keeping the system's pool from the order sync briefly.
    assert {jobs[j]["fulfil/read_minutes"] for j in cancelling} == {"0.25"}
    stocking = {name for name, tags in jobs.items() if tags["fulfil/lane"] == "stock"}
    assert stocking == {f"{flow}_stock_job" for flow in config.flows}  # never holding reconcile's slot
    ahead_of_orders = min(int(jobs[j]["dagster/priority"]) for j in cancelling)
    assert all(int(jobs[j]["dagster/priority"]) < ahead_of_orders for j in jobs if j.endswith("_order_sync_job"))
    for deploy in (ROOT / "deploy" / "dagster.yaml", ROOT / "deploy" / "postgres" / "dagster.yaml"):
        settings = yaml.safe_load(deploy.read_text())
        dequeue = settings["run_coordinator"]["config"]
        assert dequeue["dequeue_interval_seconds"] == 1 and dequeue["dequeue_use_threads"], deploy
        assert settings["sensors"]["use_threads"] and settings["schedules"]["use_threads"], deploy
        queue = settings["concurrency"]["runs"]
        bounded = {lim["value"]: lim["limit"] for lim in queue["tag_concurrency_limits"] if lim["key"] == "fulfil/lane"}
        assert set(bounded) == {"cancellations", "orders", "stock", "background"}, deploy
        assert sum(bounded.values()) <= queue["max_concurrent_runs"] - 2, f"{deploy}: no room left for latency runs"
    (tmp_path / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:  # Dagster reads the limits as written
        queue = instance.get_concurrency_config().run_queue_config
        assert {lim["value"] for lim in queue.tag_concurrency_limits} == {
            "cancellations",
            "orders",
            "stock",
            "background",
        }
        # A run whose first steps all wait for a pool is launched to wait in the pool's line, where an order sync
        # lets it go first (`waits_for_turn`), not held in the run queue while order syncs keep the pool busy.
        assert queue.should_block_op_concurrency_limited_runs and queue.op_concurrency_slot_buffer >= 2
        # The daemon polls the queue every second and launches on threads: a latency run never waits out a 5 s
        # poll or another run's launch.
        coordinator = instance.run_coordinator
        assert coordinator.dequeue_interval_seconds == 1 and coordinator.dequeue_use_threads
        assert instance.get_settings("sensors")["use_threads"] and instance.get_settings("schedules")["use_threads"]


@pytest.mark.world(n_orders=5, n_skus=100)
def test_the_despatch_sensor_asks_for_nothing_while_a_despatch_run_waits_to_start(
    emulators: Emulators, tmp_path: Path, fulfil_env: dict
) -> None:
    emu = emulators
    defs = build_definitions(emulator_config(emu, tmp_path, systems={"whistl": {"drop_url": str(emu.whistl.root)}}))
    for name in ("shp_a.csv", "shp_b.csv"):
        (emu.whistl.outbox / name).write_text("order_reference\r\n")
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        waiting = instance.add_run(
            dg.DagsterRun(job_name="despatch_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.NOT_STARTED)
        )
        held = tick_sensor(defs, instance, None)
        assert not held.run_requests and held.skip_reason and waiting.run_id in held.skip_reason.skip_message
        instance.report_run_failed(waiting)
        tick = tick_sensor(defs, instance, held.cursor)
        # Both files that waited go in one run, not one run each.
        assert len(tick.run_requests) == 1
        config = tick.run_requests[0].run_config["ops"]["despatches"]["config"]
        assert config["file_names"] == ["shp_a.csv", "shp_b.csv"]


@pytest.mark.world(n_orders=6, n_skus=100)
def test_the_peoplevox_sensor_starts_a_despatch_run_for_each_new_despatch_and_only_then(
    emulators: Emulators, tmp_path: Path, fulfil_env: dict
) -> None:
    """Peoplevox is asked every poll whether anything was despatched since the newest despatch it reported; a run
    is requested only for despatches not seen before (counted from what the emulator despatched), never twice."""
    from flow_helpers import all_flows_config, run_job

    emu = emulators
    emu.linnworks.peoplevox_share = 1.0
    defs = build_definitions(all_flows_config(emu, tmp_path, flows=["linnworks_peoplevox"]))
    sensor = defs.resolve_sensor_def("peoplevox_despatch_sensor")

    def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources={"peoplevox": defs.resources["peoplevox"]}
        )
        return sensor(context)

    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        run_job(defs, "order_sync_job", instance)
        first = tick(instance, None)
        assert not first.run_requests, "nothing despatched yet"
        refs = sorted(emu.peoplevox.sales_orders)[:2]
        numbers = [emu.peoplevox.control("despatch", {"order": ref})["despatch_number"] for ref in refs]
        asked = tick(instance, first.cursor)
        assert len(asked.run_requests) == 1 and asked.run_requests[0].tags["fulfil/despatches"] == ", ".join(numbers)
        assert not tick(instance, asked.cursor).run_requests  # seen: not asked again
        waiting = instance.add_run(
            dg.DagsterRun(
                job_name="peoplevox_despatch_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.NOT_STARTED
            )
        )
        later = emu.peoplevox.control("despatch", {"order": sorted(emu.peoplevox.sales_orders)[2]})
        held = tick(instance, asked.cursor)
        assert not held.run_requests and waiting.run_id in held.skip_reason.skip_message  # type: ignore[union-attr]
        instance.report_run_failed(waiting)
        again = tick(instance, held.cursor)
        assert [r.tags["fulfil/despatches"] for r in again.run_requests] == [later["despatch_number"]]
