"""The effect module keeps its promises at the edges: nothing lost, nothing sent twice, nothing sent to the wrong
system, nothing sent in shadow mode. Counted from the emulators' own inspection, not from our ledgers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from conftest import EffectClock, deployment_env
from flow_helpers import drain_despatches, emulator_config, run_job, set_faults, whistl_world, world_expectations

from emulators.server import Emulators
from fulfil_assets import effects
from fulfil_assets.definitions import build_definitions
from fulfil_assets.despatch.assets import ONE_UNSETTLED_PER_ORDER, TRACKING_FIRST
from fulfil_assets.despatch.oms_tracking import LinnworksTracking
from fulfil_assets.warehouse_tables import ensure_tables
from resources.linnworks import LinnworksClient
from resources.warehouse import SCHEMA, WarehouseDb


def despatch_everything(emu: Emulators, defs: dg.Definitions, instance: dg.DagsterInstance, **kwargs: bool) -> None:
    """Let the warehouse work every order through to despatch, taking its files in after each shift."""
    cursor = None
    for _ in range(5):
        emu.whistl.step()
        cursor = drain_despatches(defs, instance, cursor, **kwargs)[1]


def expected_tracking(emu: Emulators, db: WarehouseDb) -> dict[str, int]:
    """Linnworks order id -> the despatches Whistl confirmed for it (each must be posted exactly once)."""
    order_id = dict(db.read(f"SELECT order_ref, source_order_id FROM {SCHEMA}.orders").iter_rows())
    shipped: dict[str, set[str]] = {}
    for f in sorted((emu.whistl.root / "out" / "archive").glob("shp_*.csv")):
        for row in pl.read_csv(f, infer_schema=False).iter_rows(named=True):
            if int(row["quantity_despatched"]) > 0:
                shipped.setdefault(order_id[row["order_reference"]], set()).add(row["despatch_reference"])
    return {k: len(v) for k, v in shipped.items()}


def posts_applied(emu: Emulators) -> dict[str, int]:
    """What Linnworks itself holds: tracking writes applied per order."""
    return {k: len(v) for k, v in emu.linnworks.inspect()["shipping_info"].items()}


def test_an_order_held_after_a_crash_goes_out_once_it_is_ready_again(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed as the upload starts, then one order stops being ready (its SKU vanishes from the warehouse's
    catalogue): it is held, not lost; when the SKU is back it goes out by itself, and Whistl gets every order once.
    The reached-the-WMS check counts what Whistl acknowledged, not our ledger."""
    from resources.file_drop import SftpDrop

    emu = emulators
    defs, instance, db = whistl_world(emu, tmp_path, fulfil_env)
    # What must reach Whistl is the world's record of the orders it made fit to send, not our ledger.
    fit = {o["order_ref"] for o in emu.timeline()["orders"] if o["oms"] == "linnworks" and o["ready"]}
    run_config = world_expectations(emu, tmp_path)

    def killed(self, folder, name, data):
        raise KeyboardInterrupt("killed as the upload starts")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SftpDrop, "write_atomic", killed)
        run = defs.resolve_job_def("order_sync_job").execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
    assert not run.success
    intended = db.read(f"SELECT order_key, order_ref FROM {SCHEMA}.wms_submissions")
    assert set(intended["order_ref"]) == fit
    lines = db.read(f"SELECT order_key, sku FROM {SCHEMA}.wms_order_lines").join(intended, on="order_key")
    alone = lines.group_by("sku").agg(pl.col("order_ref").n_unique().alias("n")).filter(pl.col("n") == 1)
    victim_ref, victim_sku = lines.join(alone, on="sku").sort("order_ref").select("order_ref", "sku").row(0)

    title = emu.whistl.catalogue.pop(victim_sku)
    emu.whistl.snapshot()
    run_job(defs, "order_sync_job", instance, run_config)
    status = dict(db.read(f"SELECT order_ref, status FROM {SCHEMA}.wms_submissions").iter_rows())
    assert status[victim_ref] == "held" and Counter(status.values())["sent"] == len(fit) - 1

    emu.whistl.catalogue[victim_sku] = title
    emu.whistl.snapshot()
    sync = run_job(defs, "order_sync_job", instance, run_config)
    emu.whistl.step()
    receipts = emu.whistl.inspect()["receipts"]
    assert receipts == dict.fromkeys(fit, 1)
    assert reached_check(sync) is True

    # The check goes red when orders sit unacknowledged for hours, and green once Whistl's acks are taken in.
    db.execute(f"UPDATE {SCHEMA}.wms_submissions SET created_at = created_at - INTERVAL '3 hours'")
    assert reached_check(run_job(defs, "order_sync_job", instance, run_config)) is False
    drain_despatches(defs, instance, None)
    assert set(db.read(f"SELECT status FROM {SCHEMA}.wms_submissions")["status"]) == {"acknowledged"}
    assert reached_check(run_job(defs, "order_sync_job", instance, run_config)) is True


def reached_check(result: dg.ExecuteInProcessResult) -> bool:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}["every_ready_order_reached_the_wms"]


def test_tracking_once_when_linnworks_applied_calls_the_client_gave_up_on(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, effect_clock: EffectClock
) -> None:
    """Timeouts where Linnworks carries the call out after the client has gone, and a kill right after Linnworks
    applied a post: the next run reads the order back and confirms, never posts again."""
    emu = emulators
    config = emulator_config(emu, tmp_path, systems={"linnworks": {"timeout_s": 0.5, "budget_share": 1.0}})
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    emu.whistl.snapshot()
    emu.whistl.multi_parcel_share = 0.3
    run_job(defs, "order_sync_job", instance)

    real_record_all = effects.record_all
    crashed = []

    def killed_after_the_post(db_, table, outcomes, owner=None):
        sent = [keys for keys, outcome in outcomes if outcome.status == effects.SENT]
        if table == "tracking_posts" and sent and not crashed:
            crashed.append(sent[0])
            raise KeyboardInterrupt("killed after Linnworks applied the post")
        return real_record_all(db_, table, outcomes, owner)

    set_faults(emu, "linnworks", timeout_rate=0.3, timeout_s=0.8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(effects, "record_all", killed_after_the_post)
        despatch_everything(emu, defs, instance, require_success=False)
    assert crashed, "the kill never happened"
    for _ in range(3):
        defs.resolve_job_def("tracking_job").execute_in_process(instance=instance, raise_on_error=False)
    set_faults(emu, "linnworks", timeout_rate=0.0)
    emu.linnworks.apply_pending()  # every call the client gave up on has landed...
    effect_clock.advance(1.0)  # ...and unconfirmed attempts are looked up once 2 x the client timeout old
    for _ in range(3):
        run_job(defs, "tracking_job", instance)
    timeouts = db.read(f"SELECT last_error FROM {SCHEMA}.tracking_posts WHERE result LIKE 'found at target%'")
    assert timeouts.height >= 2, "no post was settled by reading the order back: the test proves nothing"

    expected = expected_tracking(emu, db)
    assert expected and posts_applied(emu) == expected
    processed = emu.linnworks.inspect()["processed"]
    process_calls = [c.body["orderId"] for c in emu.linnworks.recorder.calls if c.path.endswith("ProcessOrder")]
    assert process_calls and max(Counter(process_calls).values()) == 1
    assert set(processed) <= set(expected)
    assert set(db.read(f"SELECT status FROM {SCHEMA}.tracking_posts")["status"]) == {"sent"}


def linnworks_tracking_posts(posts: list[tuple[str, str]]) -> pl.DataFrame:
    """Ledger rows for Linnworks tracking posts: (order id, tracking number) each."""
    return pl.DataFrame(
        [
            {
                "idempotency_key": f"linnworks:tracking:{order_id}:{number}",
                "order_key": f"linnworks:{order_id}",
                "payload": effects.to_payload({"kind": "tracking", "order_id": order_id, "tracking_number": number}),
                "oms": "linnworks",
                "despatch_ref": number,
                "tracking_number": number,
                "kind": "tracking",
            }
            for order_id, number in posts
        ]
    )


def test_a_post_that_timed_out_late_in_its_batch_is_looked_up_only_once_it_could_have_landed(
    emulators: Emulators, tmp_path: Path, effect_clock: EffectClock
) -> None:
    """Posts go 25 to a batch and are recorded together: the last post of a batch times out, and Linnworks carries
    it out after the client gave up. The next delivery, straight after, must not take that post's silence at the
    order for an answer (its wait counts from when the client gave up, not from the start of the batch); once it
    could have landed, it is found on the order. Every despatch's tracking is written once."""
    emu = emulators
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    orders = sorted(emu.linnworks.orders)[:10]
    effects.intend(db, "tracking_posts", linnworks_tracking_posts([(o, f"WHL{i:04d}") for i, o in enumerate(orders)]))
    client = LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials, budget_share=1e6, timeout_s=0.5)
    last = {"pass_next": len(orders) - 1, "timeout_next": 1}  # the last post of the batch times out
    set_faults(emu, "linnworks", latency_ms=100, timeout_s=0.8, only_path="Orders/SetOrderShippingInfo", **last)

    def deliver() -> effects.DeliveryReport:  # a new sender each time, as each run makes its own
        sender = LinnworksTracking(client)
        return effects.deliver(db, "tracking_posts", sender, settle_s=2 * client.timeout_s, batches=sender.batches)

    first = deliver()
    assert (first.sent, first.deferred) == (len(orders) - 1, 1), first
    again = deliver()  # straight after: the post that timed out may still be landing
    assert again.claimed == 0 and again.sent == 0, again
    emu.linnworks.apply_pending()
    effect_clock.advance(2 * client.timeout_s)
    settled = deliver()
    assert settled.found_at_target == 1 and settled.sent == 0, settled
    writes = emu.linnworks.inspect()["shipping_info"]
    assert {o: len(writes.get(o, [])) for o in orders} == dict.fromkeys(orders, 1)
    assert set(db.read(f"SELECT status FROM {SCHEMA}.tracking_posts")["status"]) == {"sent"}


def test_a_time_boxed_delivery_leaves_the_rest_due_and_the_next_posts_each_once(
    emulators: Emulators, tmp_path: Path
) -> None:
    """A delivery given until a moment (a despatch run's time for one order system) starts no post after it: the
    rest stay due and unclaimed, and the next delivery posts exactly those. Counted at Linnworks."""
    emu = emulators
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    orders = sorted(emu.linnworks.orders)[:12]
    effects.intend(db, "tracking_posts", linnworks_tracking_posts([(o, f"BOX{i:04d}") for i, o in enumerate(orders)]))
    client = LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials, budget_share=1e6, timeout_s=5)
    set_faults(emu, "linnworks", latency_ms=250, only_path="Orders/SetOrderShippingInfo")
    sender = LinnworksTracking(client)
    sender.until = time.monotonic() + 600  # all twelve fit one batch: the sender itself stops starting posts

    def time_is_up_after_three_posts() -> None:  # by count, not by the clock: the same on a loaded machine
        while sum(c.path.endswith("SetOrderShippingInfo") for c in emu.linnworks.recorder.calls) < 3:
            time.sleep(0.005)
        sender.until = time.monotonic()

    watcher = threading.Thread(target=time_is_up_after_three_posts)
    watcher.start()
    boxed = effects.deliver(db, "tracking_posts", sender, batches=sender.batches, until=time.monotonic() + 600)
    watcher.join()
    applied = posts_applied(emu)
    assert 3 <= len(applied) < len(orders), applied
    assert boxed.sent == len(applied) and boxed.left == len(orders) - len(applied), boxed
    left = db.read(f"SELECT status, claimed_by, attempts FROM {SCHEMA}.tracking_posts WHERE status <> 'sent'")
    assert left.height == len(orders) - len(applied) and set(left["status"]) == {"pending"}
    assert set(left["attempts"]) == {0}  # never tried
    assert left["claimed_by"].null_count() == left.height  # given back: any sender may take them at once
    set_faults(emu, "linnworks", latency_ms=0)
    rest = effects.deliver(db, "tracking_posts", LinnworksTracking(client), batches=sender.batches)
    assert rest.sent == len(orders) - len(applied), rest
    assert posts_applied(emu) == {o: 1 for o in orders}
    client.close()


def test_several_posts_of_one_order_left_unsettled_by_a_crash_are_settled_not_resent(
    emulators: Emulators, tmp_path: Path
) -> None:
    """A crash after Linnworks took two despatches' tracking for one order, before either was recorded: both
    posts are unsettled. The next run takes both (never waits on them forever), finds the later number on the
    order, and posts neither again: Linnworks keeps one number per order, and sending the earlier one now would
    put an older parcel in front of the customer."""
    emu = emulators
    db = WarehouseDb(f"duckdb:///{tmp_path / 'w.duckdb'}")
    ensure_tables(db)
    order = sorted(emu.linnworks.orders)[0]
    client = LinnworksClient(emu.url("linnworks"), *emu.linnworks.credentials, budget_share=1e6, timeout_s=0.5)
    for number in ("WHL-FIRST", "WHL-SECOND"):  # two despatches, planned one after the other
        effects.intend(db, "tracking_posts", linnworks_tracking_posts([(order, number)]))
        client.set_shipping_info(order, number)
        time.sleep(0.01)
    db.execute(f"UPDATE {SCHEMA}.tracking_posts SET status = 'sending', attempts = 1, attempted_at = created_at")
    sender = LinnworksTracking(client)
    report = effects.deliver(
        db,
        "tracking_posts",
        sender,
        where=f"({TRACKING_FIRST}) AND {ONE_UNSETTLED_PER_ORDER}",
        batches=sender.batches,
    )
    assert report.found_at_target == 2 and report.sent == 0, report
    rows = dict(db.read(f"SELECT tracking_number, result FROM {SCHEMA}.tracking_posts").iter_rows())
    assert rows["WHL-SECOND"] == "found at target: order shows tracking WHL-SECOND"
    assert "superseded" in rows["WHL-FIRST"]
    assert [i["TrackingNumber"] for i in emu.linnworks.inspect()["shipping_info"][order]] == ["WHL-FIRST", "WHL-SECOND"]


@pytest.mark.postgres
def test_two_tracking_runs_at_once_post_each_once(
    emulators: Emulators, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `tracking_job` runs launched from the CLI at the same moment (no run queue between them) share
    the work through claims in the database: every post once, every order processed once. PostgreSQL: the
    warehouse that allows several writing processes."""
    emu = emulators
    deployment_env(monkeypatch, tmp_path, emu, postgres_url)
    config = emulator_config(emu, tmp_path, systems={"linnworks": {"budget_share": 1.0}})
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(postgres_url)
    emu.whistl.snapshot()
    emu.whistl.partial_share = 0.3
    run_job(defs, "order_sync_job", instance)
    despatch_everything(emu, defs, instance, files_only=True)
    pending = db.read(f"SELECT COUNT(*) AS n FROM {SCHEMA}.tracking_posts WHERE status = 'pending'")["n"][0]
    assert pending > 20
    set_faults(emu, "linnworks", latency_ms=30)

    config_file = tmp_path / "fulfil.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "fulfil_assets.definitions"]
    start = threading.Barrier(2)
    results: list[subprocess.CompletedProcess[str]] = []

    def launch(n: int) -> None:
        home = tmp_path / f"dagster_home_{n}"  # one instance each: nothing queues one run behind the other
        home.mkdir()
        env = {**os.environ, "FULFIL_CONFIG": str(config_file), "DAGSTER_HOME": str(home)}
        start.wait()
        results.append(subprocess.run([*command, "-j", "tracking_job"], env=env, capture_output=True, text=True))

    threads = [threading.Thread(target=launch, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    owners = db.read(f"SELECT status, COUNT(*) AS n FROM {SCHEMA}.tracking_posts GROUP BY status")
    assert dict(owners.iter_rows()) == {"sent": pending}
    assert posts_applied(emu) == expected_tracking(emu, db)
    process_calls = [c.body["orderId"] for c in emu.linnworks.recorder.calls if c.path.endswith("ProcessOrder")]
    assert process_calls and max(Counter(process_calls).values()) == 1


@pytest.mark.world(n_orders=20)  # Cin7 takes 60 calls a minute
def test_tracking_goes_to_the_orders_own_system(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cin7 orders travel to Whistl beside Linnworks ones; their despatches become Cin7 shipments, never
    Linnworks calls."""
    emu = emulators
    account, key = emu.cin7.credentials
    monkeypatch.setenv("CIN7_ACCOUNT_ID", account)
    monkeypatch.setenv("CIN7_APPLICATION_KEY", key)
    config = emulator_config(
        emu,
        tmp_path,
        flows=["linnworks_whistl", "cin7_whistl"],
        systems={"cin7": {"base_url": emu.url("cin7"), "budget_share": 1.0}},
    )
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    emu.whistl.snapshot()
    run_job(defs, "order_sync_job", instance)
    sent = db.read(f"SELECT order_key, flow FROM {SCHEMA}.wms_submissions")
    assert set(sent["flow"]) == {"linnworks_whistl", "cin7_whistl"}
    despatch_everything(emu, defs, instance)
    posts = db.read(f"SELECT order_key, oms, target, status FROM {SCHEMA}.tracking_posts")
    cin7 = posts.filter(pl.col("order_key").str.starts_with("cin7:"))
    assert cin7.height and set(cin7["oms"]) == {"cin7"} and set(cin7["status"]) == {"sent"}
    assert set(posts.filter(pl.col("oms") == "linnworks")["status"]) == {"sent"}
    cin7_ids = {k.split(":", 1)[1] for k in cin7["order_key"]}
    asked = {c.body.get("orderId") for c in emu.linnworks.recorder.calls if isinstance(c.body, dict)}
    assert not cin7_ids & asked, "a Cin7 order's tracking went to Linnworks"
    assert cin7_ids == set(emu.cin7.ship_state), "a Cin7 order's tracking did not reach Cin7"


def test_shadow_mode_sends_nothing_and_going_live_sends_exactly_that_once(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    shadow = build_definitions(emulator_config(emu, tmp_path, modes={"linnworks_whistl": "shadow"}))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    emu.whistl.snapshot()
    run_job(shadow, "order_sync_job", instance)
    run_job(shadow, "order_sync_job", instance)
    recorded = db.read(f"SELECT order_ref, status, payload FROM {SCHEMA}.wms_submissions")
    assert recorded.height > 0 and set(recorded["status"]) == {"shadow"}
    assert all(ref in payload for ref, payload in recorded.select("order_ref", "payload").iter_rows())
    emu.whistl.step()
    assert emu.whistl.inspect()["receipts"] == {} and not list(emu.whistl.inbox.glob("*"))

    live = build_definitions(emulator_config(emu, tmp_path))
    run_job(live, "order_sync_job", instance)
    run_job(live, "order_sync_job", instance)
    emu.whistl.step()
    receipts = emu.whistl.inspect()["receipts"]
    assert set(receipts) == set(recorded["order_ref"]) and set(receipts.values()) == {1}
    # What went out is exactly what shadow mode recorded.
    received = pl.concat(
        [pl.read_csv(f, infer_schema=False) for f in sorted(emu.whistl.received_dir.glob("ord_*.csv"))]
    )
    for ref, payload in recorded.select("order_ref", "payload").iter_rows():
        rows = received.filter(pl.col("order_reference") == ref).rows()
        assert [[c or "" for c in r] for r in rows] == [[c or "" for c in row] for row in json.loads(payload)]


def test_claims_of_a_dead_sender_are_released_and_a_live_one_is_respected(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    """A run SIGKILLed mid-send leaves its claims; the next sender frees them at once (its process is gone) but
    never takes rows a live sender holds."""
    emu = emulators
    defs = build_definitions(emulator_config(emu, tmp_path, modes={"linnworks_whistl": "shadow"}))
    instance = dg.DagsterInstance.ephemeral()
    db = WarehouseDb(fulfil_env["FULFIL_WAREHOUSE_URL"])
    emu.whistl.snapshot()
    run_job(defs, "order_sync_job", instance)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    dead_owner = f"{socket.gethostname()}:{int(dead.stdout)}:gone"
    live_owner = effects.sender_id()
    keys = db.read(f"SELECT idempotency_key FROM {SCHEMA}.wms_submissions ORDER BY 1")["idempotency_key"].to_list()
    half = len(keys) // 2
    db.execute(f"UPDATE {SCHEMA}.wms_submissions SET status = 'pending'")
    assert len(effects.claim(db, "wms_submissions", "TRUE", dead_owner, limit=half)) == half
    assert len(effects.claim(db, "wms_submissions", "TRUE", live_owner)) == len(keys) - half
    assert effects.release_dead_claims(db, "wms_submissions") == 1
    held = db.read(f"SELECT claimed_by, COUNT(*) AS n FROM {SCHEMA}.wms_submissions GROUP BY 1")
    assert dict(held.iter_rows()) == {None: half, live_owner: len(keys) - half}
    assert len(effects.claim(db, "wms_submissions", "TRUE", effects.sender_id())) == half
