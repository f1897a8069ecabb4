"""`despatch_file_sensor`: one run per new Whistl file, keyed by name + size + content hash."""

import hashlib
import json
import time
from typing import Any

import dagster as dg

from fulfil_assets.despatch.assets import FEEDBACK_PATTERNS
from resources.file_drop import FileDrop

RETRY_AFTER_S = 600.0


def file_run_key(name: str, size: int, data: bytes) -> str:
    """A file's identity: re-delivered with new content, it is a new file."""
    return f"whistl:{name}:{size}:{hashlib.sha256(data).hexdigest()[:16]}"


def despatch_file_sensor_factory(job: Any, interval_s: int) -> dg.SensorDefinition:
    """The sensor for `job` (the despatch job), polling every `interval_s` seconds."""

    @dg.sensor(job=job, minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.RUNNING)
    def despatch_file_sensor(context: dg.SensorEvaluationContext, whistl_drop: FileDrop) -> dg.SensorResult:
        """Requests a run for every despatch or rejection file waiting in Whistl's `out/` folder. The run
        archives each file it takes, so a file still waiting long after its run was asked for (the run
        crashed) is asked for again under a new key; the processed-files table keeps that from double work."""
        asked: dict[str, list[float]] = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        requests, present = [], set()
        with whistl_drop.session() as drop:
            for pattern in FEEDBACK_PATTERNS:
                for f in drop.list("out", pattern):
                    key = file_run_key(f.name, f.size, drop.read("out", f.name))
                    present.add(key)
                    first, attempts = asked.get(key, [now, 0])
                    if attempts and now - first < RETRY_AFTER_S * attempts:
                        continue
                    asked[key] = [first, attempts + 1]
                    run_key = key if attempts == 0 else f"{key}:retry{attempts}"
                    requests.append(
                        dg.RunRequest(
                            run_key=run_key,
                            run_config={"ops": {"despatches": {"config": {"file_names": [f.name]}}}},
                            tags={"fulfil/file": f.name},
                        )
                    )
        cursor = {k: v for k, v in asked.items() if k in present}
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))

    return despatch_file_sensor
