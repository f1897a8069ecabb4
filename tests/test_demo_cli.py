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


def test_a_busy_port_is_named_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = EmulatorConfig(data_dir=tmp_path).ports["cin7"]
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", port))
            taken.listen()
        except OSError:
            pass  # a demo already runs on this machine: its ports are busy just the same
        assert main(["demo", "--data-dir", str(tmp_path / "demo"), "--headless", "--reset"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(
        r"fulfil demo: port \d+ on 127\.0\.0\.1 \(the \w+ emulator\) is in use by another program: stop it \(an "
        r"earlier demo still running\?\) and try again",
        err[-1],
    ), err
    assert not any("Traceback" in line for line in err)
