"""A sidecar on this machine, started and stopped from Blender.

`start()` runs `python -m sidecar.cli` detached and never waits; `tick()` (from the poll
step) notices when it exits and connects once it has written a fresh connection file.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from .connection import LINK, LinkSettings, add_report, connect, ensure_timer, report_error

LOG_NAME = "sidecar-blender.log"


def command(python: str, workdir: Path, *, device: str, tiny: bool) -> list[str]:
    """The sidecar's command line; device "auto" leaves the choice to the sidecar, which
    takes CUDA only when torch finds it there.

    No `--bind`: the sidecar's local default (a private ipc:// socket on Linux/macOS, tcp
    loopback on Windows). It serves only this user (its key file is theirs alone), so it may
    open any dataset that user can read; a shared sidecar's operator names --data-root.
    """
    cmd = [python, "-m", "sidecar.cli", "--workdir", str(workdir)]
    cmd += ["--data-root", str(Path(workdir).resolve().anchor or "/")]
    if device != "auto":
        cmd += ["--device", device]
    return cmd + (["--profile", "tiny"] if tiny else [])


def start(
    python: str, workdir: str, *, device: str, tiny: bool, settings: LinkSettings | None = None
) -> Path:
    """Start the sidecar detached (never waits); returns its connection file.

    The poll step connects once the sidecar has written that file (with `settings`).
    """
    if is_running():
        raise RuntimeError("a local sidecar started from Blender is already running")
    if not python or not Path(python).is_file():
        raise FileNotFoundError(f"sidecar Python {python!r} does not exist")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / LOG_NAME, "ab")  # noqa: SIM115 - the child owns it
    LINK.autoconnect_since = time.time() - 1.0  # file-system mtimes may be coarse
    LINK.local_process = subprocess.Popen(
        command(python, work, device=device, tiny=tiny),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )  # fmt: skip
    log.close()
    if settings is not None:
        LINK.settings = settings
    LINK.autoconnect_file = LINK.local_connection_file = work / "connection.json"
    ensure_timer()
    return LINK.autoconnect_file


def is_running() -> bool:
    return LINK.local_process is not None and LINK.local_process.poll() is None


def stop(context: Any) -> bool:
    """SIGTERM the sidecar this Blender started (its sessions stay on disk).

    A deliberate stop: the link to it is closed as "Disconnected", never shown as lost.
    """
    if not is_running():
        LINK.local_process = None
        return False
    from .connection import disconnect

    connected_file = Path(LINK.settings.connection_file) if LINK.settings.connection_file else None
    if LINK.client is not None and connected_file == LINK.local_connection_file:
        disconnect(context, "the local sidecar was stopped")
    LINK.autoconnect_file = None
    LINK.local_process.terminate()
    return True


def tick(context: Any) -> None:
    """From the poll step: report an exit; connect to a freshly started sidecar."""
    proc = LINK.local_process
    if proc is not None and proc.poll() is not None:
        add_report(context, "INFO", f"local sidecar exited with code {proc.returncode}")
        LINK.local_process = None
    _autoconnect(context)


def _autoconnect(context: Any) -> None:
    path = LINK.autoconnect_file
    if path is None or LINK.local_process is None:
        return
    try:
        fresh = path.stat().st_mtime >= LINK.autoconnect_since
    except OSError:
        return
    if not fresh:
        return
    LINK.autoconnect_file = None
    if LINK.client is not None and LINK.client.state in ("connected", "lost"):
        return  # a lost link re-reads this file itself and comes back
    settings = dataclasses.replace(LINK.settings, connection_file=str(path))
    try:
        connect(context, settings)
    except (PermissionError, ValueError, OSError, ImportError) as exc:
        report_error(context, f"Cannot connect to the local sidecar: {exc}")
