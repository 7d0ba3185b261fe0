"""The job queue: FIFO, one job at a time, executed in a worker process.

`JobManager` lives in the server process and never blocks: `poll()` (called from the socket
loop) forwards what the worker reported, notices a dead worker, enforces a cancel deadline
and starts the next queued job. States::

    queued ──► running ──► finished | failed | cancelled
       └──────────────────► cancelled   (cancelled while still queued)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sidecar.errors import SidecarError
from sidecar.kinds import get_job_kind
from sidecar.pipe import (
    JobPreviewed,
    JobProgressed,
    JobRaised,
    JobRequest,
    JobStopped,
    JobSucceeded,
    MemoryReading,
    RunJob,
    StopWorker,
    WorkerReady,
    check_request,
)
from sidecar.worker import WorkerOptions, worker_main

JobState = Literal["queued", "running", "finished", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"finished", "failed", "cancelled"})


@dataclass(frozen=True)
class JobLimits:
    """Bounds and deadlines of the queue."""

    max_queued: int = 64
    """Jobs waiting at once; more are refused with `queue_full`."""
    cancel_grace_s: float = 60.0
    """After a cancel request, a running job that has not stopped by then is killed."""
    keep_finished: int = 200
    """Finished jobs (and their results) kept in memory for `job.get`."""
    worker_start_timeout_s: float = 120.0
    """A worker that has not said "ready" by then is treated as crashed."""


@dataclass
class Job:
    """One job and everything a client may ask about it."""

    id: str
    kind: str
    session_id: str | None
    request: JobRequest
    """The kind's request record, as the worker gets it."""
    state: JobState = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    progress: dict | None = None
    """The last ProgressEvent as a map."""
    last_progress_at: float | None = None
    """Wall time of the last progress report (not a heartbeat: a stuck job stops it)."""
    reason: str | None = None
    """Why it failed: "exception", "out_of_memory", "worker_crashed", "worker_start_failed",
    "no_space" (the disk filled up; the nodes it wrote are left interrupted)."""
    error: str | None = None
    traceback: str | None = None
    result: dict | None = None
    cancel_requested_at: float | None = None
    cancel_latency_s: float | None = None
    """Seconds from the cancel request to the job actually stopping."""
    origin: str | None = None
    """msg_id of the request that created the job (job events name it as their parent)."""

    @property
    def requested_turn(self) -> str | None:
        """The turn the request names (its `turn_id` field), if it has one."""
        return getattr(self.request, "turn_id", None)

    def summary(self, position: int | None = None) -> dict:
        """A msgpack-able description (no result arrays, no request record)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "session_id": self.session_id,
            "state": self.state,
            "position": position,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
            "progress": self.progress,
            "last_progress_at": self.last_progress_at,
            "reason": self.reason,
            "error": self.error,
            "traceback": self.traceback,
            "cancel_latency_s": self.cancel_latency_s,
        }


JobListener = Callable[[Job, str, dict], None]
"""Called for every job event: (job, event kind e.g. "job.progress", event data)."""


class _Worker:
    """One worker process and its pipe."""

    def __init__(self, options: WorkerOptions) -> None:
        context = multiprocessing.get_context("spawn")
        self.cancel_event = context.Event()
        self.conn, child_conn = context.Pipe(duplex=True)
        self.process = context.Process(
            target=worker_main,
            args=(child_conn, self.cancel_event, options),
            name="edit3d-sidecar-worker",
        )
        self.process.start()
        child_conn.close()
        self.started_at = time.monotonic()
        self.ready = False

    def alive(self) -> bool:
        return self.process.is_alive()

    def death_reason(self) -> str:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is None:
            return "worker process stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"worker process killed by {name}"
        return f"worker process exited with code {code}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()

    def stop(self, timeout_s: float) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(StopWorker())
        self.process.join(timeout=timeout_s)
        self.kill()


class JobManager:
    """The queue (FIFO, interactive jobs ahead of long ones) + the single worker. Call
    `poll()` often from the server loop."""

    def __init__(
        self,
        options: WorkerOptions,
        listener: JobListener,
        limits: JobLimits | None = None,
        session_dir_resolver: Callable[[str], str] | None = None,
    ) -> None:
        self.options = options
        self.session_dir_resolver = session_dir_resolver
        """Maps a session id to its directory, handed to the job."""
        self.limits = limits or JobLimits()
        self._listener = listener
        self._jobs: dict[str, Job] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._running: Job | None = None
        self._worker: _Worker | None = None
        self._finished_order: collections.deque[str] = collections.deque()
        self.worker_restarts = 0
        self.device_info: dict = {}
        """What the last worker reported about its device (GPU name, memory)."""

    # ----- queries -----------------------------------------------------------------------
    def get(self, job_id: object) -> Job:
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise SidecarError("not_found", f"no job {job_id!r}")
        return job

    def position(self, job: Job) -> int | None:
        """0 = running, 1 = next, ...; None once it is over."""
        if job.state == "running":
            return 0
        if job.state == "queued":
            return self._queue.index(job.id) + 1
        return None

    def describe(self, job: Job) -> dict:
        return job.summary(self.position(job))

    @property
    def running(self) -> Job | None:
        return self._running

    def queued(self) -> list[Job]:
        return [self._jobs[job_id] for job_id in self._queue]

    def jobs(self, session_id: str | None = None) -> list[Job]:
        return [
            job for job in self._jobs.values() if session_id is None or job.session_id == session_id
        ]

    def session_busy(self, session_id: str) -> bool:
        """Whether a job of that session is running or waiting."""
        return any(
            job.session_id == session_id and job.state not in TERMINAL_STATES
            for job in self._jobs.values()
        )

    def worker_pid(self) -> int | None:
        return self._worker.process.pid if self._worker and self._worker.alive() else None

    def fileno(self) -> int | None:
        """The worker pipe's descriptor, to wake the server's poller on worker messages."""
        return self._worker.conn.fileno() if self._worker is not None else None

    # ----- commands ----------------------------------------------------------------------
    def submit(
        self, kind: str, session_id: str | None, request: JobRequest, origin: str | None = None
    ) -> Job:
        """Queue a job of `kind` for its request record (which validated itself)."""
        job_kind = get_job_kind(kind)
        if job_kind.needs_session and session_id is None:
            raise SidecarError("bad_request", f"job kind {kind!r} needs a session_id")
        try:
            check_request(kind, request, job_kind.request)
            if job_kind.check is not None:
                job_kind.check(request)
        except (TypeError, ValueError) as exc:
            raise SidecarError("bad_request", str(exc)) from exc
        self.check_room()
        self._check_after(session_id, getattr(request, "after_job", None))
        job = Job(uuid.uuid4().hex[:16], kind, session_id, request, origin=origin)
        self._jobs[job.id] = job
        overtaken = self._enqueue(job, job_kind.interactive)
        self._emit(job, "job.queued", {})
        if overtaken:
            self._announce_positions()
        return job

    def _enqueue(self, job: Job, interactive: bool) -> bool:
        """Queue a job; an interactive one goes ahead of every waiting long job (of any
        session). Returns whether it overtook any (their positions changed)."""
        index = len(self._queue)
        if interactive:
            index = next(
                (i for i, job_id in enumerate(self._queue) if not self._is_interactive(job_id)),
                index,
            )
        self._queue.insert(index, job.id)
        return index < len(self._queue) - 1

    def _is_interactive(self, job_id: str) -> bool:
        return get_job_kind(self._jobs[job_id].kind).interactive

    def check_room(self) -> None:
        """Raise `queue_full` when no job can be queued now."""
        if len(self._queue) >= self.limits.max_queued:
            raise SidecarError("queue_full", f"{len(self._queue)} jobs are already waiting")

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or ask the running one to stop (cooperatively)."""
        job = self.get(job_id)
        if job.state == "queued":
            self._queue.remove(job.id)
            job.cancel_requested_at = time.monotonic()
            self._end(job, "cancelled")
            self._announce_positions()
        elif job.state == "running" and job.cancel_requested_at is None:
            job.cancel_requested_at = time.monotonic()
            if self._worker is not None:
                self._worker.cancel_event.set()
            self._emit(job, "job.cancelling", {})
        return job

    # ----- the pump ----------------------------------------------------------------------
    def poll(self) -> None:
        """Forward worker reports, detect a dead worker, start the next job. Never blocks."""
        self._drain_worker()
        self._check_worker_health()
        self._enforce_cancel_deadline()
        self._start_next()

    def _drain_worker(self) -> None:
        worker = self._worker
        if worker is None:
            return
        try:
            while worker.conn.poll(0):
                self._handle_message(worker.conn.recv())
        except (EOFError, OSError):
            pass  # the health check below finds out what happened

    def _check_worker_health(self) -> None:
        worker = self._worker
        if worker is None:
            return
        if not worker.alive():
            reason = worker.death_reason()
            worker.kill()
            self._worker = None
            self.worker_restarts += 1
            if self._running is not None:
                self._fail_running("worker_crashed", reason)
            return
        if not worker.ready and time.monotonic() - worker.started_at > (
            self.limits.worker_start_timeout_s
        ):
            worker.kill()
            self._worker = None
            if self._running is not None:
                self._fail_running("worker_start_failed", "worker did not start in time")

    def _enforce_cancel_deadline(self) -> None:
        job = self._running
        if job is None or job.cancel_requested_at is None or self._worker is None:
            return
        if time.monotonic() - job.cancel_requested_at > self.limits.cancel_grace_s:
            # The job ignored the cooperative cancel: stop it the hard way.
            self._worker.kill()
            self._worker = None
            self.worker_restarts += 1
            self._end(job, "cancelled", forced=True)
            self._running = None

    def ensure_worker(self) -> None:
        """Start the worker now (it then stays warm), instead of at the first job."""
        if self._worker is None:
            self._worker = _Worker(self.options)

    def _start_next(self) -> None:
        if self._running is not None or not self._queue:
            return
        self.ensure_worker()
        assert self._worker is not None
        job = self._jobs[self._queue.popleft()]
        if not self._resolve_after(job):
            self._start_next()
            return
        self._running = job
        job.state = "running"
        job.started = time.time()
        self._worker.cancel_event.clear()
        session_dir = self._session_dir_of(job)
        try:
            self._worker.conn.send(RunJob(job.id, job.kind, session_dir, job.request))
        except (OSError, ValueError) as exc:
            self._fail_running("worker_crashed", f"could not hand the job to the worker: {exc}")
            return
        self._emit(job, "job.started", {})
        self._announce_positions()

    def _check_after(self, session_id: str | None, after: str | None) -> None:
        """A job may be queued on top of another job of the same session only."""
        if after is None:
            return
        parent = self._jobs.get(after)
        if parent is None or parent.session_id != session_id:
            raise SidecarError("not_found", f"no job {after!r} in this session to queue after")
        if parent.state in ("failed", "cancelled"):
            raise SidecarError("bad_request", f"job {after!r} {parent.state}: nothing to build on")

    def _resolve_after(self, job: Job) -> bool:
        """A job queued on top of another (its request's `after_job`) builds on the turn that
        job made: that turn becomes its `parent_turn`. Without one (the job failed or was
        cancelled), it fails too, saying why."""
        after = getattr(job.request, "after_job", None)
        if after is None:
            return True
        parent = self._jobs.get(after)
        finished = parent is not None and parent.state == "finished"
        turn_id = (parent.result or {}).get("turn_id") if finished else None
        if turn_id is None:
            job.reason = "parent_failed"
            job.error = f"the job it was queued on ({after}) ended without a turn"
            self._end(job, "failed")
            return False
        job.request = dataclasses.replace(job.request, parent_turn=turn_id, after_job=None)
        return True

    def _session_dir_of(self, job: Job) -> str | None:
        if job.session_id is None or self.session_dir_resolver is None:
            return None
        return self.session_dir_resolver(job.session_id)

    def _handle_message(self, message: object) -> None:
        if isinstance(message, WorkerReady):
            if self._worker is not None:
                self._worker.ready = True
            self.device_info = dict(message.device)
            return
        if isinstance(message, MemoryReading):
            self.device_info["gpu_memory_free"] = message.gpu_memory_free
            return
        job = self._jobs.get(getattr(message, "job_id", None))  # type: ignore[arg-type]
        if job is None or job is not self._running:
            return  # a late report of a job already ended (e.g. force-cancelled)
        if isinstance(message, JobProgressed):
            job.progress = message.event
            job.last_progress_at = time.time()
            self._emit(job, "job.progress", message.event)
        elif isinstance(message, JobPreviewed):
            self._emit(job, "job.preview", message.frame)
        elif isinstance(message, JobSucceeded):
            job.result = message.result
            self._end(job, "finished")
        elif isinstance(message, JobStopped):
            self._end(job, "cancelled")
        elif isinstance(message, JobRaised):
            job.reason, job.error, job.traceback = message.reason, message.error, message.traceback
            self._end(job, "failed")
            if message.reason == "out_of_memory":
                self._restart_worker()  # a fresh process gives all device memory back
        # JobBegan needs nothing: the job was marked running when it was handed over.

    def _restart_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout_s=10.0)
            self._worker = None
            self.worker_restarts += 1

    def _fail_running(self, reason: str, error: str) -> None:
        job = self._running
        if job is None:
            return
        job.reason, job.error = reason, error
        if job.cancel_requested_at is not None:
            self._end(job, "cancelled")  # it was stopping anyway
        else:
            self._end(job, "failed")

    def _end(self, job: Job, state: JobState, *, forced: bool = False) -> None:
        job.state = state
        job.ended = time.time()
        if job.cancel_requested_at is not None and state == "cancelled":
            job.cancel_latency_s = time.monotonic() - job.cancel_requested_at
        if job is self._running:
            self._running = None
        data: dict = {}
        if state == "cancelled":
            data = {"latency_s": job.cancel_latency_s, "forced": forced}
        elif state == "failed":
            data = {"reason": job.reason, "error": job.error, "traceback": job.traceback}
        elif state == "finished":
            data = {"result": job.result}
        self._emit(job, f"job.{state}", data)
        self._remember_finished(job)

    def _remember_finished(self, job: Job) -> None:
        self._finished_order.append(job.id)
        while len(self._finished_order) > self.limits.keep_finished:
            self._jobs.pop(self._finished_order.popleft(), None)

    def _announce_positions(self) -> None:
        for index, job_id in enumerate(self._queue):
            job = self._jobs[job_id]
            self._emit(job, "job.position", {"position": index + 1})

    def _emit(self, job: Job, kind: str, data: dict) -> None:
        self._listener(job, kind, data)

    # ----- shutdown ----------------------------------------------------------------------
    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel what runs (cooperatively, then by force), drop the queue, stop the worker."""
        for job_id in list(self._queue):
            self.cancel(job_id)
        if self._running is not None:
            self.cancel(self._running.id)
            deadline = time.monotonic() + timeout_s
            while self._running is not None and time.monotonic() < deadline:
                self._drain_worker()
                self._check_worker_health()
                time.sleep(0.02)
            if self._running is not None:
                self._fail_running("worker_crashed", "killed at sidecar shutdown")
        if self._worker is not None:
            self._worker.stop(timeout_s=min(timeout_s, 5.0))
            self._worker = None
