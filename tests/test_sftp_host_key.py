"""Whistl's SFTP server is trusted only by its host key: the fingerprint pinned in fulfil.yaml or the key a
known_hosts file lists. A server whose key changed gets no password, no order file and no read, and the run says
which key it offered and which was expected."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from flow_helpers import emulator_config

from emulators.server import Emulators, sftp_host_key, sftp_host_key_fingerprint
from fulfil_assets.config import ConfigError, load_config
from fulfil_assets.definitions import build_definitions
from resources.file_drop import FileDrop, HostKeyError


def files_at_whistl(emu: Emulators) -> set[str]:
    """Every file under the emulated server's root (what any client wrote or left there)."""
    return {str(p.relative_to(emu.whistl.root)) for p in emu.whistl.root.rglob("*") if p.is_file()}


def drop(emu: Emulators, **trust: str) -> FileDrop:
    return FileDrop(
        url=f"sftp://brand@127.0.0.1:{emu.ports['whistl_sftp']}/", password=emu.config.sftp_password, **trust
    )


def known_hosts_line(emu: Emulators, seed: int) -> str:
    """A known_hosts line for the emulator's address with the host key of world `seed`."""
    public = sftp_host_key(seed).export_public_key("openssh").decode().split()[:2]
    return f"[127.0.0.1]:{emu.ports['whistl_sftp']} {' '.join(public)}\n"


def test_the_pinned_key_or_a_known_hosts_entry_lets_files_through(emulators: Emulators, tmp_path: Path) -> None:
    emu = emulators
    with drop(emu, host_key=emu.sftp_host_key).session() as session:
        session.write_atomic("in", "pinned.txt", b"hello\n")
    assert emu.sftp_logins == ["brand"]  # (the record a refused key is checked against)
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line(emu, emu.config.seed))
    with drop(emu, known_hosts=str(known)).session() as session:
        assert session.read("in", "pinned.txt") == b"hello\n"


@pytest.mark.parametrize("how", ["pinned", "known_hosts", "unlisted", "nothing"])
def test_a_changed_or_unknown_key_stops_before_anything_is_sent(emulators: Emulators, tmp_path: Path, how: str) -> None:
    emu = emulators
    other = emu.config.seed + 1  # the key a server that is not this one (or changed its key) would present
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line(emu, other) if how == "known_hosts" else "[10.0.0.9]:22 ssh-ed25519 AAAA\n")
    trust = {
        "pinned": {"host_key": sftp_host_key_fingerprint(other)},
        "known_hosts": {"known_hosts": str(known)},
        "unlisted": {"known_hosts": str(known)},
        "nothing": {},
    }[how]
    before = files_at_whistl(emu)
    with pytest.raises(HostKeyError) as refused, drop(emu, **trust).session() as session:
        session.write_atomic("in", "never.txt", b"an order\n")
    assert files_at_whistl(emu) == before
    assert emu.sftp_logins == []  # the server never saw a password
    message = str(refused.value)
    assert emu.sftp_host_key in message  # what the server offered, so a person can compare with Whistl's
    if how in ("pinned", "known_hosts"):
        assert sftp_host_key_fingerprint(other) in message  # and what was expected
    assert emu.config.sftp_password not in message


def error_chain(error: object) -> str:
    """A step failure's message with those of its causes, as the UI shows them."""
    parts = []
    while error is not None:
        parts.append(str(error.message))  # type: ignore[attr-defined]
        error = error.cause  # type: ignore[attr-defined]
    return " ".join(parts)


def test_an_order_sync_against_a_server_whose_key_changed_sends_nothing_and_says_why(
    emulators: Emulators, fulfil_env: dict, tmp_path: Path
) -> None:
    emu = emulators
    changed = sftp_host_key_fingerprint(emu.config.seed + 1)
    defs = build_definitions(emulator_config(emu, tmp_path, systems={"whistl": {"host_key": changed}}))
    before = files_at_whistl(emu)
    result = defs.resolve_job_def("linnworks_order_sync_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    text = " ".join(error_chain(e.event_specific_data.error) for e in failures)  # type: ignore[union-attr]
    assert f"offered host key {emu.sftp_host_key}, not the {changed} pinned" in text, text
    assert files_at_whistl(emu) == before  # no order file, nothing moved
    assert emu.sftp_logins == []  # neither fulfil's uploads nor dlt's reads sent the password
    assert emu.config.sftp_password not in text


def test_an_sftp_drop_without_a_key_to_check_is_refused_on_load(tmp_path: Path) -> None:
    path = tmp_path / "fulfil.yaml"
    path.write_text(
        "flows: [linnworks_whistl]\nsystems:\n  linnworks: {base_url: http://127.0.0.1:8701}\n"
        "  whistl: {drop_url: 'sftp://brand@127.0.0.1:8722/'}\n"
    )
    with pytest.raises(ConfigError, match=r"systems\.whistl: an sftp:// drop_url needs host_key .* or known_hosts"):
        load_config(path)
    path.write_text(path.read_text().replace("/'}", "/', host_key: 'SHA256:abc'}"))
    with pytest.raises(ConfigError, match=r"systems\.whistl\.host_key: String should match pattern"):
        load_config(path)
