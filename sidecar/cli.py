"""`edit3d-sidecar`: start the server for one work directory.

    edit3d-sidecar --workdir DIR [--bind local|tcp://127.0.0.1:PORT] [--curve]
                   [--allow-insecure-remote] [--device cuda|cpu] [--profile real|tiny]
                   [--data-root DIR ...] [--allow-editor pkg.mod:Factory ...]
                   [--advertise HOST[:PORT]]

Prints its endpoint and the connection file's path, one `key: value` per line, then serves
until SIGINT/SIGTERM: the running job is cancelled (cooperatively, then by force), the
socket is closed, the lock released; sessions stay on disk untouched.

Exit codes: 0 stopped by a signal, 2 insecure bind refused or a bad option value, 3 work
directory already served, 4 endpoint could not be bound.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import zmq

from protocol.connection import is_loopback
from sidecar.kinds import DEFAULT_JOB_MODULES

LOCK_FILE = "sidecar.lock"


class WorkdirLocked(RuntimeError):
    """Another sidecar already serves this work directory."""


def acquire_lock(workdir: Path) -> int:
    """Hold an exclusive flock on WORKDIR/sidecar.lock for the life of the process."""
    path = workdir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise WorkdirLocked(
            f"another sidecar (pid {holder}) already serves {workdir}; stop it or use "
            "another --workdir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edit3d-sidecar",
        description="Serve Edit3D jobs (training, editing turns, masks, export) over ZeroMQ.",
    )
    parser.add_argument("--workdir", type=Path, required=True,
                        help="folder for sessions, the lock and the connection file")
    parser.add_argument("--bind", default="local",
                        help="ZeroMQ endpoint (tcp port 0 picks a free one); default 'local': "
                        "a private ipc:// socket in WORKDIR/run on Linux/macOS, else "
                        "tcp://127.0.0.1:0")
    parser.add_argument("--curve", action="store_true",
                        help="encrypt with CURVE (required for a non-loopback --bind)")
    parser.add_argument("--allow-insecure-remote", action="store_true",
                        help="allow a non-loopback --bind without CURVE (trusted networks)")
    parser.add_argument("--device", default=None,
                        help="torch device for jobs (default: cuda if available, else cpu)")
    parser.add_argument("--profile", choices=("real", "tiny"), default="real",
                        help="model weights: published (real) or tiny random (checks only)")
    parser.add_argument("--data-root", action="append", default=[], type=Path, metavar="DIR",
                        help="folder clients may open datasets and ns-train runs from (may "
                        "repeat; the work directory's uploads are always allowed)")
    parser.add_argument("--allow-editor", action="append", default=[], metavar="PKG.MOD:FACTORY",
                        help="editor import path clients may name besides ip2p (may repeat)")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="Ray cluster for sessions that ask for an editor pool "
                        "(ray://head:10001; default: Ray on this machine)")
    parser.add_argument("--advertise", default=None, metavar="HOST[:PORT]",
                        help="endpoint written to the connection file (for a wildcard "
                        "--bind: the name or address clients reach this machine by)")
    parser.add_argument("--job-module", action="append", default=[], metavar="MODULE",
                        help="extra module registering job kinds (may repeat)")
    parser.add_argument("--no-preload", action="store_true",
                        help="do not import edit3d's heavy modules ahead of the first job")
    parser.add_argument("--log-level", default="INFO")
    return parser


def _default_device() -> str:
    """cuda when a GPU is visible (checked without importing torch in the server)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "cpu"
    return "cuda" if Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists() else "cpu"


EDITOR_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
"""What --allow-editor takes: "package.module:Factory"."""


def option_problem(args: argparse.Namespace) -> str | None:
    """Why the options cannot work (a message for the operator), or None."""
    for spec in args.allow_editor:
        if not EDITOR_IMPORT_PATH.fullmatch(spec):
            return f"--allow-editor {spec!r} must look like package.module:Factory"
    for root in args.data_root:
        if not root.expanduser().is_dir():
            return f"--data-root {str(root)!r} is not a directory"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    problem = option_problem(args)
    if problem is not None:
        print(f"edit3d-sidecar: {problem}", file=sys.stderr)
        return 2
    remote = args.bind != "local" and not is_loopback(args.bind)
    if remote and not args.curve and not args.allow_insecure_remote:
        print(f"edit3d-sidecar: refusing to bind {args.bind} without --curve: it is reachable "
              "from other machines (add --curve, or --allow-insecure-remote on a trusted "
              "network)", file=sys.stderr)
        return 2
    workdir = args.workdir.expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        lock_fd = acquire_lock(workdir)
    except WorkdirLocked as exc:
        print(f"edit3d-sidecar: {exc}", file=sys.stderr)
        return 3
    try:
        return _serve(args, workdir)
    finally:
        os.close(lock_fd)  # releases the flock


def _serve(args: argparse.Namespace, workdir: Path) -> int:
    from sidecar.server import ServerConfig, Sidecar

    config = ServerConfig(
        workdir=workdir,
        bind=args.bind,
        device=args.device or _default_device(),
        profile=args.profile,
        curve=args.curve,
        allow_insecure_remote=args.allow_insecure_remote,
        job_modules=(*DEFAULT_JOB_MODULES, *args.job_module),
        preload=not args.no_preload,
        data_roots=tuple(root.expanduser().resolve() for root in args.data_root),
        allowed_editors=tuple(args.allow_editor),
        ray_address=args.ray_address,
        advertise=args.advertise,
    )
    try:
        sidecar = Sidecar(config)
    except zmq.ZMQError as exc:
        print(f"edit3d-sidecar: cannot bind {args.bind}: {exc}", file=sys.stderr)
        return 4

    def request_stop(signum: int, _frame: object) -> None:
        logging.getLogger("sidecar").info("signal %d: shutting down", signum)
        sidecar.stop()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        recovered = sidecar.recover_sessions()
        for session_id, turns in recovered.items():
            logging.getLogger("sidecar").info("session %s: turns %s marked interrupted",
                                              session_id, ", ".join(turns))
        print(f"endpoint: {sidecar.endpoint.endpoint}", flush=True)
        print(f"connection_file: {sidecar.connection_file}", flush=True)
        print(f"device: {config.device}", flush=True)
        sidecar.serve_forever()
    finally:
        sidecar.close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
