"""A warehouse's file exchange: a local folder or an SFTP server, with atomic writes and moves. An SFTP server's
host key is checked against the fingerprint pinned in fulfil.yaml or a `known_hosts` file before the password is
sent or any file is read or written: an unknown or changed key stops the step with both keys named."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import dagster as dg
import paramiko
from pydantic import Field


@dataclass(frozen=True)
class DropFile:
    """A file in a drop folder."""

    folder: str
    name: str
    size: int
    mtime: float = 0.0  # seconds since the epoch, as the server reports it


class DropSession(Protocol):
    """What the pipeline needs of a file exchange."""

    def list(self, folder: str, pattern: str) -> list[DropFile]:
        """Files in `folder` whose names match `pattern` (temporary and hidden names excluded)."""

    def read(self, folder: str, name: str) -> bytes:
        """A file's bytes."""

    def write_atomic(self, folder: str, name: str, data: bytes) -> None:
        """Write under a temporary name, then rename, so readers never see half a file."""

    def move(self, folder: str, name: str, to_folder: str, new_name: str | None = None) -> None:
        """Move a file to another folder (creating it), under `new_name` if given, replacing a file there."""

    def exists(self, folder: str, name: str) -> bool:
        """Whether the file exists."""


def keep_file(drop: DropSession, name: str, folder: str, digest: str) -> str:
    """Move a file taken in from `out/` to `folder`, never over an earlier file of the same name (a corrected
    re-send keeps both: the second gets its content hash in its name). Returns where it went."""
    target = name
    if drop.exists(folder, name):
        stem, dot, ext = name.rpartition(".")
        target = f"{stem}.{digest[:12]}.{ext}" if dot else f"{name}.{digest[:12]}"
    drop.move("out", name, folder, target)
    return f"{folder}/{target}"


def _visible(name: str, pattern: str) -> bool:
    return not name.startswith(".") and not name.endswith(".tmp") and fnmatch.fnmatch(name, pattern)


class LocalDrop:
    """A drop folder on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self, folder: str, pattern: str) -> list[DropFile]:
        """Matching files, by name."""
        base = self.root / folder
        if not base.is_dir():
            return []
        return sorted(
            (
                DropFile(folder, p.name, (st := p.stat()).st_size, st.st_mtime)
                for p in base.iterdir()
                if p.is_file() and _visible(p.name, pattern)
            ),
            key=lambda f: f.name,
        )

    def read(self, folder: str, name: str) -> bytes:
        """A file's bytes."""
        return (self.root / folder / name).read_bytes()

    def write_atomic(self, folder: str, name: str, data: bytes) -> None:
        """Temp file, fsync, rename."""
        base = self.root / folder
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, base / name)

    def move(self, folder: str, name: str, to_folder: str, new_name: str | None = None) -> None:
        """Rename into `to_folder`."""
        (self.root / to_folder).mkdir(parents=True, exist_ok=True)
        os.replace(self.root / folder / name, self.root / to_folder / (new_name or name))

    def exists(self, folder: str, name: str) -> bool:
        """Whether the file exists."""
        return (self.root / folder / name).is_file()


class SftpDrop:
    """A drop folder on an SFTP server (paramiko)."""

    def __init__(self, sftp: object, root: str) -> None:
        self.sftp, self.root = sftp, root

    def _path(self, folder: str, name: str = "") -> str:
        return posixpath.join(self.root, folder, name) if name else posixpath.join(self.root, folder)

    def list(self, folder: str, pattern: str) -> list[DropFile]:
        """Matching regular files, by name."""
        try:
            entries = self.sftp.listdir_attr(self._path(folder))  # type: ignore[attr-defined]
        except FileNotFoundError:
            return []
        return sorted(
            (
                DropFile(folder, e.filename, e.st_size or 0, float(e.st_mtime or 0))
                for e in entries
                if stat.S_ISREG(e.st_mode or 0) and _visible(e.filename, pattern)
            ),
            key=lambda f: f.name,
        )

    def read(self, folder: str, name: str) -> bytes:
        """A file's bytes."""
        with self.sftp.open(self._path(folder, name), "rb") as fh:  # type: ignore[attr-defined]
            return fh.read()

    def _mkdir(self, folder: str) -> None:
        try:
            self.sftp.mkdir(self._path(folder))  # type: ignore[attr-defined]
        except OSError:
            pass  # exists

    def write_atomic(self, folder: str, name: str, data: bytes) -> None:
        """Upload under a temporary name, then posix-rename."""
        self._mkdir(folder)
        tmp = self._path(folder, f".{name}.tmp")
        with self.sftp.open(tmp, "wb") as fh:  # type: ignore[attr-defined]
            fh.write(data)
        self.sftp.posix_rename(tmp, self._path(folder, name))  # type: ignore[attr-defined]

    def move(self, folder: str, name: str, to_folder: str, new_name: str | None = None) -> None:
        """posix-rename into `to_folder`."""
        self._mkdir(to_folder)
        target = self._path(to_folder, new_name or name)
        self.sftp.posix_rename(self._path(folder, name), target)  # type: ignore[attr-defined]

    def exists(self, folder: str, name: str) -> bool:
        """Whether the file exists."""
        try:
            self.sftp.stat(self._path(folder, name))  # type: ignore[attr-defined]
            return True
        except FileNotFoundError:
            return False


class HostKeyError(PermissionError):
    """The SFTP server's host key is not the one fulfil was told to expect: nothing was sent to it."""


def fingerprint(key: paramiko.PKey) -> str:
    """A host key's OpenSSH SHA256 fingerprint (`SHA256:` and unpadded base64), as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def verify_host_key(key: paramiko.PKey, host: str, port: int, pinned: str = "", known_hosts: str = "") -> None:
    """Accept the server's `key` only when it is the `pinned` fingerprint or the key `known_hosts` lists for the
    host (`[host]:port` off port 22); raise HostKeyError naming what was offered and what was expected."""

    offered = fingerprint(key)
    where = f"{host}:{port}"
    if pinned:
        if offered != pinned:
            raise HostKeyError(
                f"SFTP server {where} offered host key {offered}, not the {pinned} pinned in fulfil.yaml "
                "(systems.whistl.host_key): nothing was sent. If Whistl changed its key, confirm the new fingerprint "
                "with them and pin it."
            )
        return
    if not known_hosts:
        raise HostKeyError(
            f"SFTP server {where} offered host key {offered}, and fulfil.yaml gives nothing to check it against: "
            "set systems.whistl.host_key (the fingerprint Whistl gives you) or systems.whistl.known_hosts"
        )
    try:
        hosts = paramiko.HostKeys(known_hosts)
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyError(f"known_hosts file {known_hosts}: cannot be read ({exc})") from None
    name = host if port == 22 else f"[{host}]:{port}"
    listed = hosts.lookup(name) or {}
    expected = listed.get(key.get_name())
    if expected is None:
        raise HostKeyError(
            f"SFTP server {where} offered a {key.get_name()} host key {offered}, and {known_hosts} lists none for "
            f"{name}: add it (ssh-keyscan -p {port} {host}) once you have checked the fingerprint with Whistl"
        )
    if expected.asbytes() != key.asbytes():
        raise HostKeyError(
            f"SFTP server {where} offered host key {offered}, not the {fingerprint(expected)} {known_hosts} lists "
            "for it: the server changed its key or is not Whistl's; nothing was sent"
        )


class HostKeyCheck(paramiko.MissingHostKeyPolicy):
    """A paramiko host key policy for clients fulfil does not drive itself (dlt's SFTP reads through fsspec): the
    server's key must pass `verify_host_key` before the client logs in."""

    def __init__(self, port: int, pinned: str = "", known_hosts: str = "") -> None:
        self.port, self.pinned, self.known_hosts = port, pinned, known_hosts

    def missing_host_key(self, client: object, hostname: str, key: paramiko.PKey) -> None:
        """Called by paramiko for a key it holds no record of (every key: nothing is preloaded)."""
        verify_host_key(key, hostname, self.port, self.pinned, self.known_hosts)


def open_transport(url: str, timeout_s: float, pinned: str = "", known_hosts: str = "") -> paramiko.Transport:
    """An SSH transport to the drop's server whose host key has been checked, not yet logged in."""

    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 22
    transport = paramiko.Transport((host, port))
    transport.banner_timeout = timeout_s
    try:
        transport.start_client(timeout=timeout_s)
        verify_host_key(transport.get_remote_server_key(), host, port, pinned, known_hosts)
    except BaseException:
        transport.close()
        raise
    return transport


class FileDrop(dg.ConfigurableResource):
    """A warehouse's file exchange: `url` is a local folder or `sftp://user@host:port/path`; an SFTP server's key
    must match `host_key` (a SHA256 fingerprint) or the server's entry in the `known_hosts` file."""

    url: str = Field(description="local folder, or sftp://user@host:port/path")
    password: str = Field(default="", description="SFTP password (from an environment variable)")
    host_key: str = Field(default="", description="the SFTP server's SHA256 host key fingerprint")
    known_hosts: str = Field(default="", description="an OpenSSH known_hosts file listing the SFTP server's key")
    timeout_s: float = 30.0

    @contextmanager
    def session(self) -> Iterator[DropSession]:
        """An open exchange for the duration of a step."""
        parsed = urlparse(self.url)
        if parsed.scheme not in ("", "sftp", "file") and "://" in self.url:
            raise ValueError(f"drop url: unknown scheme {parsed.scheme!r} (sftp://user@host:port/path or a folder)")
        if parsed.scheme != "sftp":
            yield LocalDrop(Path(parsed.path if parsed.scheme == "file" else self.url))
            return
        transport = open_transport(self.url, self.timeout_s, self.host_key, self.known_hosts)
        try:
            transport.auth_password(parsed.username or "", self.password)
        except paramiko.AuthenticationException:
            transport.close()
            raise PermissionError(f"SFTP login refused for user {parsed.username!r} at {parsed.hostname}") from None
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
            assert sftp is not None
            sftp.get_channel().settimeout(self.timeout_s)
            yield SftpDrop(sftp, parsed.path or "/")
        finally:
            transport.close()

    def describe(self) -> str:
        """The URL without credentials, for metadata."""
        parsed = urlparse(self.url)
        return f"sftp://{parsed.hostname}:{parsed.port}{parsed.path}" if parsed.scheme == "sftp" else self.url
