"""The despatch sensors: `despatch_file_sensor`, one run per new Whistl file (keyed by name + size + content hash),
and `peoplevox_despatch_sensor`, a run as soon as Peoplevox reports a new despatch."""

import hashlib
import json
import time
from typing import Any

import dagster as dg

from fulfil_assets.despatch.intake import feedback_files
from fulfil_assets.ingest.peoplevox_source import EPOCH, date_clause
from fulfil_assets.schedules import waiting_run_of
from resources.file_drop import DropFile, FileDrop
from resources.peoplevox import PeoplevoxResource
from resources.warehouse import SCHEMA, Warehouse

RETRY_AFTER_S = 600.0
_SENSOR_CLIENTS: dict[tuple[str, ...], Any] = {}  # the Peoplevox sensor's client per account, kept across ticks


def file_run_key(name: str, size: int, digest: str) -> str:
    """A file's identity: re-delivered with new content, it is a new file."""
    return f"whistl:{name}:{size}:{digest[:16]}"


def batch_run_key(keys: list[str]) -> str:
    """One run's key for several files' keys (each file's own key stays in the cursor)."""
    return "whistl:batch:" + hashlib.sha256("|".join(sorted(keys)).encode()).hexdigest()[:24]


def settled(f: DropFile, last_seen: list[Any] | None, now: float, settle_s: float) -> bool:
    """Whether a file has stopped changing: unchanged for `settle_s` by its modification time, or unchanged in
    size and time since the previous tick saw it."""
    return now - f.mtime >= settle_s or (last_seen is not None and last_seen[:2] == [f.size, f.mtime])


def despatch_file_sensor_factory(job: Any, interval_s: int, settle_s: float, shadow: bool) -> dg.SensorDefinition:
    """The sensor for `job` (the despatch job), polling every `interval_s` seconds. In `shadow` (every Whistl flow
    is), files taken in stay in `out/`: those are not asked for again."""

    @dg.sensor(job=job, minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.RUNNING)
    def despatch_file_sensor(
        context: dg.SensorEvaluationContext, whistl_drop: FileDrop, warehouse: Warehouse
    ) -> dg.SensorResult:
        """Requests one run for the acknowledgement, despatch and rejection files waiting in Whistl's `out/` folder
        once each has stopped changing (a file still being written waits). Each file is read and hashed once (the
        cursor remembers size, time and hash); the run archives each file it takes, so a file still waiting long
        after its run was asked for (the run crashed) is asked for again under a new key, and the processed-files
        table keeps that from double work. While a despatch run is still queued, nothing more is asked: the files
        that arrive meanwhile go together in the next run once it has started."""
        waiting = waiting_run_of(context.instance, job.name)
        if waiting is not None:
            return dg.SensorResult(
                skip_reason=f"despatch run {waiting.run_id} has not started yet; new files wait for the next run",
                cursor=context.cursor,
            )
        state: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
        seen: dict[str, list[Any]] = state.get("files", {})  # name -> [size, mtime, sha256 or None]
        asked: dict[str, list[float]] = state.get("asked", {})
        now = time.time()
        due: list[tuple[str, str]] = []  # (run key, file name)
        present, files = set(), {}
        taken = set()
        if shadow:
            rows = warehouse.get_db().read(
                f"SELECT file_name, content_hash FROM {SCHEMA}.processed_files WHERE wms = 'whistl'"
            )
            taken = set(rows.iter_rows())
        with whistl_drop.session() as drop:
            for f in feedback_files(drop):
                last = seen.get(f.name)
                if not settled(f, last, now, settle_s):
                    files[f.name] = [f.size, f.mtime, None]
                    context.log.info(f"{f.name}: still changing ({f.size} bytes); waiting for it to settle")
                    continue
                same = last is not None and last[:2] == [f.size, f.mtime] and last[2]
                digest = last[2] if same else hashlib.sha256(drop.read("out", f.name)).hexdigest()
                files[f.name] = [f.size, f.mtime, digest]
                if (f.name, digest) in taken:
                    continue
                key = file_run_key(f.name, f.size, digest)
                present.add(key)
                first, attempts = asked.get(key, [now, 0])
                if attempts and now - first < RETRY_AFTER_S * attempts:
                    continue
                asked[key] = [first, attempts + 1]
                due.append((key if attempts == 0 else f"{key}:retry{attempts}", f.name))
        cursor = {"files": files, "asked": {k: v for k, v in asked.items() if k in present}}
        requests = []
        if due:
            names = [name for _, name in due]
            requests.append(
                dg.RunRequest(
                    run_key=due[0][0] if len(due) == 1 else batch_run_key([key for key, _ in due]),
                    run_config={"ops": {"despatches": {"config": {"file_names": names}}}},
                    tags={"fulfil/file": ", ".join(names)[:1000]},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))

    return despatch_file_sensor


def new_despatches(rows: list[dict[str, str]], since: str, seen: list[str]) -> list[dict[str, str]]:
    """Of Peoplevox despatch rows read from `since` on (its date filter is inclusive, to the second), those not
    seen before: later than `since`, or at `since` under a despatch number not in `seen`."""
    return [r for r in rows if r.get("DespatchDate", "") > since or r.get("DespatchNumber") not in seen]


def peoplevox_despatch_sensor_factory(job: Any, interval_s: int) -> dg.SensorDefinition:
    """The sensor that asks Peoplevox every `interval_s` seconds whether anything was despatched since it last
    looked, and starts `job` (the Peoplevox despatch run) only when something was."""

    @dg.sensor(job=job, minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.RUNNING)
    def peoplevox_despatch_sensor(context: dg.SensorEvaluationContext, peoplevox: PeoplevoxResource) -> dg.SensorResult:
        """One `GetData Despatches` page since the newest despatch time seen: a new despatch starts a despatch run
        at once (which reads, matches and posts the tracking), instead of waiting for the next scheduled poll.
        While a despatch run is still waiting to start, nothing more is asked: it will read these too."""
        waiting = waiting_run_of(context.instance, job.name)
        if waiting is not None:
            return dg.SensorResult(
                skip_reason=f"Peoplevox despatch run {waiting.run_id} has not started yet; it reads these too",
                cursor=context.cursor,
            )
        state: dict[str, Any] = json.loads(context.cursor) if context.cursor else {"since": EPOCH, "seen": []}
        # One client (and one Peoplevox session, renewed when it lapses) for every tick of this code server.
        account = (peoplevox.base_url, peoplevox.client_id, peoplevox.username)
        client = _SENSOR_CLIENTS.get(account) or _SENSOR_CLIENTS.setdefault(account, peoplevox.get_client())
        rows = next(client.get_data("Despatches", date_clause("DespatchDate", state["since"]), 200), [])
        new = new_despatches(rows, state["since"], state["seen"])
        if not new:
            return dg.SensorResult(skip_reason="no new Peoplevox despatch", cursor=json.dumps(state))
        newest = max(r["DespatchDate"] for r in new)
        seen = sorted({r["DespatchNumber"] for r in rows if r.get("DespatchDate") == newest})
        numbers = sorted({r["DespatchNumber"] for r in new})
        request = dg.RunRequest(
            run_key=f"peoplevox:{newest}:{','.join(numbers)[:200]}",
            tags={"fulfil/despatches": ", ".join(numbers)[:1000]},
        )
        return dg.SensorResult(run_requests=[request], cursor=json.dumps({"since": newest, "seen": seen}))

    return peoplevox_despatch_sensor
