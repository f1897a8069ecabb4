"""Process trees: `dagster-daemon` starts code servers in sessions of their own and they launch the runs, so
stopping the daemon's process group alone leaves them behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every live process started by `pid`, however deep, sessions of their own included (Dagster starts its code
    servers in a new session, out of reach of a signal to the process group); read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_process_tree(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM `proc`'s process group, wait up to `grace_s`, then SIGKILL whatever it started that is still
    alive (a daemon's code servers and the runs they launched), so nothing is left behind."""
    tree = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pid in tree + [p for child in tree for p in descendants(child)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_logged(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start a long-lived process of a deployment in a session of its own (so `stop_process_tree` reaches all it
    starts), its output appended to `log`."""
    with log.open("a") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def start_daemon(env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """`dagster-daemon run` on fulfil's code location: every schedule and sensor, the run queue and its launcher."""
    return start_logged(
        [sys.executable, "-m", "dagster._daemon", "run", "-m", "fulfil_assets.definitions"], env, log, cwd
    )


def start_celery_worker(env: dict[str, str], log: Path, cwd: Path, name: str, queue: str) -> subprocess.Popen:
    """One Celery worker (node `<name>@<host>`) taking fulfil's steps from `queue` one at a time
    (`FULFIL_EXECUTOR=celery`), through
    dagster-celery's own worker command (which starts `celery` from the PATH: this environment's first); the
    broker comes from `CELERY_BROKER_URL` in `env`."""
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-q", queue]
    command += ["--name", name, "-l", "WARNING", "--", "--concurrency=1"]
    return start_logged(command, {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}, log, cwd)
