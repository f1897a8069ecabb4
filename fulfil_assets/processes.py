"""Process trees: `dagster-daemon` starts code servers in sessions of their own and they launch the runs, so
stopping the daemon's process group alone leaves them behind."""

from __future__ import annotations

import os
import signal
import subprocess
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
