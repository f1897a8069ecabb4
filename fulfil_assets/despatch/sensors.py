"""`despatch_file_sensor`: one run per new Whistl file, keyed by name + size + content hash."""

import hashlib
import json
import time
from typing import Any

import dagster as dg

from fulfil_assets.despatch.assets import feedback_files
from resources.file_drop import DropFile, FileDrop

RETRY_AFTER_S = 600.0


def file_run_key(name: str, size: int, digest: str) -> str:
    """A file's identity: re-delivered with new content, it is a new file."""
    return f"whistl:{name}:{size}:{digest[:16]}"


def settled(f: DropFile, last_seen: list[Any] | None, now: float, settle_s: float) -> bool:
    """Whether a file has stopped changing: unchanged for `settle_s` by its modification time, or unchanged in
    size and time since the previous tick saw it."""
    return now - f.mtime >= settle_s or (last_seen is not None and last_seen[:2] == [f.size, f.mtime])


def despatch_file_sensor_factory(job: Any, interval_s: int, settle_s: float) -> dg.SensorDefinition:
    """The sensor for `job` (the despatch job), polling every `interval_s` seconds."""

    @dg.sensor(job=job, minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.RUNNING)
    def despatch_file_sensor(context: dg.SensorEvaluationContext, whistl_drop: FileDrop) -> dg.SensorResult:
        """Requests a run for every acknowledgement, despatch or rejection file waiting in Whistl's `out/` folder
        once it has stopped changing (a file still being written waits). Each file is read and hashed once (the
        cursor remembers size, time and hash); the run archives each file it takes, so a file still waiting long
        after its run was asked for (the run crashed) is asked for again under a new key, and the processed-files
        table keeps that from double work."""
        state: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
        seen: dict[str, list[Any]] = state.get("files", {})  # name -> [size, mtime, sha256 or None]
        asked: dict[str, list[float]] = state.get("asked", {})
        now = time.time()
        requests, present, files = [], set(), {}
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
                key = file_run_key(f.name, f.size, digest)
                present.add(key)
                first, attempts = asked.get(key, [now, 0])
                if attempts and now - first < RETRY_AFTER_S * attempts:
                    continue
                asked[key] = [first, attempts + 1]
                requests.append(
                    dg.RunRequest(
                        run_key=key if attempts == 0 else f"{key}:retry{attempts}",
                        run_config={"ops": {"despatches": {"config": {"file_names": [f.name]}}}},
                        tags={"fulfil/file": f.name},
                    )
                )
        cursor = {"files": files, "asked": {k: v for k, v in asked.items() if k in present}}
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))

    return despatch_file_sensor
