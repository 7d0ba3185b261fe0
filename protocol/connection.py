"""Connection files, keys, CURVE helpers and endpoint checks."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from .version import PROTOCOL_VERSION

KEY_BYTES = 32


class ConnectionFileError(ValueError):
    """A connection file is missing, malformed or readable by other users."""


@dataclass(frozen=True)
class ConnectionInfo:
    """What a client needs to reach a sidecar (the content of its connection file)."""

    endpoint: str
    """ZeroMQ endpoint, e.g. "tcp://127.0.0.1:5555"."""
    key: bytes
    """HMAC key (raw bytes; hex in the file)."""
    protocol_version: tuple[int, int] = PROTOCOL_VERSION
    """Protocol version the sidecar speaks."""
    pid: int | None = None
    """Sidecar process id (for local launchers)."""
    curve_server_public_key: str | None = None
    """Z85 CURVE public key of the server, if the socket is encrypted."""

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ConnectionFileError(f"key must be at least 16 bytes, got {len(self.key)}")
        if "://" not in self.endpoint:
            raise ConnectionFileError(f"endpoint {self.endpoint!r} is not a ZeroMQ endpoint")

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "key": self.key.hex(),
            "protocol_version": list(self.protocol_version),
            "pid": self.pid,
            "curve_server_public_key": self.curve_server_public_key,
        }


def new_key() -> bytes:
    """A fresh random HMAC key."""
    return secrets.token_bytes(KEY_BYTES)


def write_connection_file(path: str | os.PathLike[str], info: ConnectionInfo) -> Path:
    """Write `info` as JSON, mode 0600, atomically (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 from the start: the key is never world-readable.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info.to_json(), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_connection_file(path: str | os.PathLike[str]) -> ConnectionInfo:
    """Read a connection file; refuses files that group or others can read (POSIX)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConnectionFileError(f"connection file {path} does not exist "
                                  "(is the sidecar running?)") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConnectionFileError(
            f"connection file {path} is accessible by other users (mode {mode & 0o777:04o}); "
            f"it holds the sidecar's key: run `chmod 600 {path}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("protocol_version", list(PROTOCOL_VERSION))
        return ConnectionInfo(
            endpoint=str(data["endpoint"]),
            key=bytes.fromhex(data["key"]),
            protocol_version=(int(version[0]), int(version[1])),
            pid=data.get("pid"),
            curve_server_public_key=data.get("curve_server_public_key"),
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ConnectionFileError(f"connection file {path} is malformed: {exc}") from None


# --------------------------------------------------------------------------- endpoints


def is_loopback(endpoint: str) -> bool:
    """True if `endpoint` cannot be reached from another machine.

    ipc:// and inproc:// are local; tcp:// is local only for 127.0.0.0/8, ::1 or
    "localhost". Wildcards ("*", 0.0.0.0) and interface names are not.
    """
    transport, sep, address = endpoint.partition("://")
    if not sep:
        raise ValueError(f"endpoint {endpoint!r} has no transport (e.g. tcp://127.0.0.1:5555)")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.split(";")[-1]  # "source;dest" form: the bind/connect target decides
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


IPC_SOCKET_NAME = "sidecar.sock"
MAX_IPC_PATH = 100
"""Longest ipc:// socket path used (the OS limit is 107 bytes on Linux, 103 on macOS)."""


class InsecureTransportError(ConnectionFileError):
    """An ipc:// socket lies in a directory that other users can enter."""


def ipc_path(endpoint: str) -> Path | None:
    """The socket file of an ipc:// endpoint, else None."""
    transport, _, address = endpoint.partition("://")
    return Path(address) if transport == "ipc" else None


def private_ipc_endpoint(directory: str | os.PathLike[str]) -> str:
    """An ipc:// endpoint in `directory`, created (or tightened) to mode 0700.

    Falls back to a fresh private temporary directory when the path would be too long
    for a socket address.
    """
    folder = Path(directory)
    if len(str(folder / IPC_SOCKET_NAME)) > MAX_IPC_PATH:
        folder = Path(tempfile.mkdtemp(prefix="edit3d-"))  # created 0700
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return f"ipc://{folder / IPC_SOCKET_NAME}"


def check_private_ipc(endpoint: str) -> None:
    """Refuse an ipc:// socket whose directory is not this user's alone (POSIX)."""
    path = ipc_path(endpoint)
    if path is None or os.name != "posix":
        return
    try:
        info = path.parent.stat()
    except FileNotFoundError:
        raise InsecureTransportError(f"the directory of {endpoint} does not exist "
                                     "(is the sidecar running?)") from None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureTransportError(
            f"{path.parent} (holding the socket of {endpoint}) must belong to this user "
            f"with mode 0700 (it is uid {info.st_uid}, mode {info.st_mode & 0o777:04o}): "
            "other users could connect to it")


def transport_authenticates(endpoint: str, curve: bool) -> bool:
    """True when the transport itself authenticates every byte of every message.

    CURVE seals each message with a MAC under the session's keys; an ipc:// socket in a
    directory only this user can enter (POSIX) admits only this user's processes; inproc://
    never leaves the process. Then the signed header needs no digests of later frames.
    Both ends compute this from the same endpoint and CURVE setting, so they agree.
    """
    if curve:
        return True
    transport = endpoint.partition("://")[0]
    return transport == "inproc" or (transport == "ipc" and os.name == "posix")


# --------------------------------------------------------------------------- CURVE


def curve_available() -> bool:
    """libzmq was built with CURVE (libsodium) support."""
    return bool(zmq.has("curve"))


def curve_keypair() -> tuple[str, str]:
    """A new (public, secret) CURVE keypair as Z85 strings."""
    if not curve_available():
        raise RuntimeError("this libzmq has no CURVE support")
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


def write_curve_keypair(path: str | os.PathLike[str]) -> str:
    """Create a keypair file (JSON, 0600); returns the public key to give to clients."""
    public, secret = curve_keypair()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"public": public, "secret": secret}, handle)
    os.replace(tmp, path)
    return public


def load_curve_keypair(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(public, secret) from a keypair file written by `write_curve_keypair`."""
    path = Path(path)
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConnectionFileError(f"CURVE key file {path} is accessible by other users")
    data = json.loads(path.read_text(encoding="utf-8"))
    return str(data["public"]), str(data["secret"])


def configure_curve_server(socket: zmq.Socket[Any], secret_key: str) -> None:
    """Make `socket` a CURVE server (call before bind)."""
    socket.curve_secretkey = secret_key.encode("ascii")
    socket.curve_server = True


def configure_curve_client(
    socket: zmq.Socket[Any], server_public_key: str, keypair: tuple[str, str] | None = None
) -> None:
    """Make `socket` a CURVE client of the server with `server_public_key` (before connect)."""
    public, secret = keypair or curve_keypair()
    socket.curve_serverkey = server_public_key.encode("ascii")
    socket.curve_publickey = public.encode("ascii")
    socket.curve_secretkey = secret.encode("ascii")
