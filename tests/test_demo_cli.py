"""`fulfil demo` keeps the emulators' world and the warehouse together, and says in one line what stops it."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from emulators.server import EmulatorConfig
from fulfil_assets.cli import main


def test_an_earlier_demo_is_refused_without_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "warehouse.duckdb").write_bytes(b"")  # an earlier demo's warehouse
    (tmp_path / "dagster_home").mkdir()
    assert main(["demo", "--data-dir", str(tmp_path), "--headless"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--reset" in err and "warehouse.duckdb, dagster_home" in err
    assert (tmp_path / "warehouse.duckdb").exists()  # nothing was touched


def test_a_busy_port_is_named_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], demo_ports: None) -> None:
    port = EmulatorConfig(data_dir=tmp_path).ports["cin7"]
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", port))
            taken.listen()
        except OSError:
            pass  # a demo already runs on this machine: its ports are busy just the same
        assert main(["demo", "--data-dir", str(tmp_path / "demo"), "--headless", "--reset"]) == 2
        # What the refused start made is gone: the next start is not taken for an earlier demo.
        leftover = sorted(p.name for p in (tmp_path / "demo").glob("*"))
        assert leftover == [], leftover
    err = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(
        r"fulfil demo: port \d+ on 127\.0\.0\.1 \(the \w+ emulator\) is in use by another program: stop it \(an "
        r"earlier demo still running\?\) and try again",
        err[-1],
    ), err
    assert not any("Traceback" in line for line in err)


def test_the_demo_terminal_keeps_runs_starting_and_ending_and_drops_the_debug_stream(tmp_path: Path) -> None:
    """A real `dagster job execute` run's output through the demo's filter: the run's start and end stay, the
    DEBUG event stream (step outputs, passed checks, ...) goes."""
    import os
    import subprocess
    import sys

    from fulfil_assets.cli import REPO, worth_printing

    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "FULFIL_CONFIG": str(REPO / "fulfil.yaml"),
        "FULFIL_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'w.duckdb'}",
    }
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "fulfil_assets.definitions", "-j"]
    run = subprocess.run([*command, "reconcile_job"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = (run.stdout + run.stderr).splitlines(keepends=True)
    kept = [line for line in lines if worth_printing(line)]
    assert any(" - RUN_START - " in line for line in kept) and any(" - RUN_SUCCESS - " in line for line in kept)
    assert not any(" - STEP_OUTPUT - " in line for line in kept)
    assert any("ASSET_CHECK_EVALUATION" in line and "passed" in line for line in lines)
    assert not any("ASSET_CHECK_EVALUATION" in line and "passed" in line for line in kept)
    assert sum(" - DEBUG - " in line for line in lines) > 10 * sum(" - DEBUG - " in line for line in kept)
