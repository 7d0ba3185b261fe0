"""The worker process: runs one job at a time for the server, over a multiprocessing pipe.

The pipe carries the typed records of `sidecar.pipe`: a job arrives as `RunJob` with its
kind's request record; the worker answers `WorkerReady` once, then `JobBegan`,
`JobProgressed`/`JobPreviewed`, and one of `JobSucceeded`, `JobRaised`, `JobStopped` per job,
with `MemoryReading`s (free GPU memory) while jobs run and after each.

The worker lives in its own process (spawn start method) so that anything a job does to the
process — an exception, CUDA running out of memory, a segfault in an extension — costs only
that job: the server sees the pipe close, fails the job with the exit reason and starts a
fresh worker. Cancellation is a shared `multiprocessing.Event` that edit3d polls through a
`CancelToken` between iterations and denoising steps.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

from edit3d.progress import Cancelled, CancelToken
from sidecar.fsutil import is_disk_full
from sidecar.kinds import JobContext, get_job_kind, load_job_modules
from sidecar.pipe import (
    JobBegan,
    JobProgressed,
    JobRaised,
    JobStopped,
    JobSucceeded,
    MemoryReading,
    RunJob,
    StopWorker,
    WorkerReady,
    WorkerReport,
)


@dataclass(frozen=True)
class WorkerOptions:
    """How the worker runs jobs (picklable: it crosses the spawn boundary)."""

    device: str = "cpu"
    """Torch device for every job."""
    profile: str = "real"
    """Model profile: "real" or "tiny"."""
    job_modules: tuple[str, ...] = ()
    """Modules that register job kinds, imported at worker start."""
    preload: tuple[str, ...] = ()
    """Modules imported right after "ready" (torch, nerfstudio...), so the first job starts
    without paying for them."""
    allowed_editors: tuple[str, ...] = ()
    """Editor import paths the operator allowed (besides the registered editors)."""
    data_roots: tuple[Path, ...] = ()
    """Folders datasets and ns-train runs may be read from (besides the uploads)."""
    ray_address: str | None = None
    """Ray cluster for editor pools (None: Ray on this machine, started on first use)."""


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker if the server dies (kill -9 leaves no orphan job)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def device_info(device: str) -> dict:
    """Name and memory of the job device (reported once per worker start)."""
    info: dict = {"device": device}
    if not device.startswith("cuda"):
        return info
    try:
        import torch

        index = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(index)
        info.update(gpu_name=torch.cuda.get_device_name(index), gpu_memory_total=int(total),
                    gpu_memory_free=int(free))
    except Exception as exc:  # no driver, no device: the job that needs it will say so
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


MEMORY_REPORT_INTERVAL_S = 5.0
"""Least seconds between two reports of free GPU memory while a job reports progress."""


def gpu_memory_free(device: str) -> int | None:
    """Free memory of the job GPU in bytes (the whole device, other processes included);
    None on a CPU or where it cannot be read."""
    if not device.startswith("cuda"):
        return None
    try:
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device).index or 0)
    except Exception:  # no driver, no device: the job that needs it will say so
        return None
    return int(free)


class MemoryReporter:
    """Wraps the job's channel to the server: with a progress report at most every
    `interval_s`, and once when the job ends, it also sends the free GPU memory (so the
    heartbeat can show it while a job holds the device). Nothing is sent on a CPU."""

    def __init__(self, send, device: str, interval_s: float = MEMORY_REPORT_INTERVAL_S,
                 probe=gpu_memory_free) -> None:
        import time

        self._send = send
        self._device = device
        self._interval_s = interval_s
        self._probe = probe
        self._last = time.monotonic()
        self.enabled = device.startswith("cuda")

    def send(self, message: WorkerReport) -> None:
        import time

        self._send(message)
        if self.enabled and isinstance(message, JobProgressed):
            now = time.monotonic()
            if now - self._last >= self._interval_s:
                self._last = now
                self.report()

    def report(self) -> None:
        if self.enabled:
            self._send(MemoryReading(self._probe(self._device)))


def _is_out_of_memory(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _failure_reason(exc: BaseException) -> str:
    if _is_out_of_memory(exc):
        return "out_of_memory"
    if is_disk_full(exc) or is_disk_full(exc.__cause__ or exc.__context__ or exc):
        return "no_space"
    return "exception"


def _run_job(
    conn: Connection, options: WorkerOptions, cancel_event: EventType, cache: dict,
    job: RunJob,
) -> None:
    parent_pid = os.getppid()

    def cancel_requested() -> bool:
        # A worker whose server is gone must stop too (belt and braces with PDEATHSIG).
        return cancel_event.is_set() or os.getppid() != parent_pid

    memory = MemoryReporter(conn.send, options.device)
    ctx = JobContext(
        job_id=job.job_id,
        kind=job.kind,
        request=job.request,
        session_dir=Path(job.session_dir) if job.session_dir else None,
        cancel=CancelToken(predicate=cancel_requested),
        device=options.device,
        profile=options.profile,
        cache=cache,
        send=memory.send,
        allowed_editors=options.allowed_editors,
        data_roots=options.data_roots,
        ray_address=options.ray_address,
    )
    conn.send(JobBegan(job.job_id))
    try:
        result = get_job_kind(job.kind).run(ctx)
        conn.send(JobSucceeded(job.job_id, result or {}))
    except Cancelled:
        conn.send(JobStopped(job.job_id))
    except Exception as exc:  # every failure of a job is reported, none kills the worker
        reason = _failure_reason(exc)
        message_text = f"{type(exc).__name__}: {exc}"
        conn.send(JobRaised(job.job_id, reason, message_text, traceback.format_exc()))
    memory.report()


def _preload(module: str) -> None:
    import importlib
    import logging

    try:
        importlib.import_module(module)
    except Exception:  # the job that needs it reports the real error
        logging.getLogger("sidecar.worker").exception("preloading %s failed", module)


def worker_main(conn: Connection, cancel_event: EventType, options: WorkerOptions) -> None:
    """Entry point of the worker process."""
    _die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group; the server decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    load_job_modules(options.job_modules)
    cache: dict = {}
    conn.send(WorkerReady(os.getpid(), device_info(options.device)))
    for module in options.preload:
        _preload(module)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # server gone
        if isinstance(message, StopWorker):
            return
        if isinstance(message, RunJob):
            _run_job(conn, options, cancel_event, cache, message)
