"""Where the sidecar is: a connection file or an endpoint + key, checked with errors that
say exactly what is wrong (and a stale file of a sidecar that is gone, found at once)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def resolve(settings: Any) -> Any:
    """The protocol.ConnectionInfo of `settings` (a LinkSettings); raises ValueError or
    OSError naming the problem."""
    from .protocol import ConnectionInfo, is_loopback, load_connection_file

    if settings.connection_file:
        path = Path(settings.connection_file)
        _check_file(path)
        info = load_connection_file(path)
        if info.pid is not None and is_loopback(info.endpoint) and not pid_alive(info.pid):
            raise ValueError(
                f"connection file {path} is stale: the sidecar that wrote it (pid {info.pid}) "
                "is not running; start the sidecar again"
            )
        return info
    if not settings.endpoint or not settings.key_hex:
        raise ValueError("set a connection file, or an endpoint and key, in the preferences")
    try:
        key = bytes.fromhex(settings.key_hex.strip())
    except ValueError as exc:
        raise ValueError(f"key is not hexadecimal: {exc}") from None
    return ConnectionInfo(endpoint=settings.endpoint, key=key)


def _check_file(path: Path) -> None:
    """Problems the generic reader would report vaguely: a folder, not JSON, no key."""
    if path.is_dir():
        raise IsADirectoryError(
            f"connection file {path} is a folder: choose the connection.json the sidecar "
            "wrote inside its workdir"
        )
    if not path.is_file():
        raise FileNotFoundError(f"connection file {path} does not exist (is the sidecar running?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"connection file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"connection file {path} does not hold a JSON object")
    missing = [name for name in ("endpoint", "key") if name not in data]
    if missing:
        raise ValueError(
            f"connection file {path} has no {' or '.join(repr(m) for m in missing)} field: "
            "is it a sidecar's connection.json?"
        )


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (assumed on Windows, where
    os.kill cannot probe: signal 0 would be a Ctrl-C there)."""
    if os.name == "nt":
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (owned by someone else), or this platform cannot tell
    return True


def is_local(info: Any) -> bool:
    """The sidecar is on this machine (loopback or IPC): no online access needed."""
    from .protocol import is_loopback

    return is_loopback(info.endpoint)
