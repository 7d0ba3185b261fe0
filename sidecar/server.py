"""The sidecar's socket loop: one ROUTER socket, a poller with a short timeout, a dispatch
table from request type to a thin handler, and the job manager pumped every turn.

The loop never waits on a job: jobs run in the worker process; their reports arrive on a
pipe that is polled together with the socket. Heartbeats and status requests are answered
while a job runs, and report the time of the job's last progress separately from liveness.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from edit3d.progress import ProgressEvent
from protocol.connection import (
    ConnectionInfo,
    new_key,
    private_ipc_endpoint,
    write_connection_file,
)
from protocol.messages import (
    MAX_EDITORS,
    EditorStatus,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobInfo,
    JobPreview,
    JobProgress,
    JobQueued,
    JobStarted,
    Message,
)
from protocol.server import Incoming, ServerEndpoint
from sidecar.errors import SidecarError
from sidecar.events import EventHub
from sidecar.fsutil import is_disk_full
from sidecar.jobs import Job, JobLimits, JobManager
from sidecar.kinds import DEFAULT_JOB_MODULES, job_kinds, load_job_modules
from sidecar.sessions import SessionLimits, SessionStore
from sidecar.worker import WorkerOptions

log = logging.getLogger("sidecar")

CONNECTION_FILE = "connection.json"
PRELOAD_MODULES: tuple[str, ...] = ("edit3d.workspace", "edit3d.segmentation.adss")
"""What the worker imports right after starting."""
SERVER_PRELOAD = "edit3d.workspace"
"""What the server reads session summaries with."""
CURVE_KEY_FILE = "curve_server.key"
LOCAL_BIND = "local"
"""The default bind: a private ipc:// socket where the OS has them, else tcp loopback."""
IPC_DIR = "run"

# Sidecar error codes → the protocol's stable codes (the precise one goes in `detail`).
_PROTOCOL_CODES = {
    "bad_request": "invalid_field",
    "not_found": "not_found",
    "session_busy": "conflict",
    "unsafe_path": "invalid_field",
    "too_large": "too_large",
    "checksum_mismatch": "invalid_field",
    "bad_offset": "conflict",
    "exists": "conflict",
    "unknown_job_kind": "unknown_type",
    "queue_full": "busy",
    "not_ready": "conflict",
    "not_allowed": "not_allowed",
    "no_space": "no_space",
    "internal": "internal",
}


@dataclass(frozen=True)
class ServerConfig:
    """How one sidecar runs."""

    workdir: Path
    """Folder holding sessions/, the lock and the connection file."""
    bind: str = LOCAL_BIND
    """ZeroMQ endpoint to bind (tcp port 0 = pick a free port). "local" = an ipc:// socket in
    `workdir/run` (mode 0700) on POSIX, whose permissions authenticate every byte so no
    per-frame digests are computed; tcp://127.0.0.1:0 (with digests) elsewhere."""
    device: str = "cpu"
    """Torch device for jobs."""
    profile: str = "real"
    """Model profile for jobs: "real" or "tiny"."""
    curve: bool = False
    """Encrypt the socket with CURVE (needed for a non-loopback bind)."""
    allow_insecure_remote: bool = False
    """Allow a non-loopback bind without CURVE (trusted networks only)."""
    job_modules: tuple[str, ...] = DEFAULT_JOB_MODULES
    """Modules that register job kinds (the server checks kinds, the worker runs them)."""
    preload: bool = True
    """Import edit3d's heavy modules ahead of need: in the worker (first job starts sooner)
    and in a server thread (the first session summary does not stall the loop)."""
    poll_timeout_ms: int = 20
    """Longest wait of one loop turn."""
    job_limits: JobLimits = field(default_factory=JobLimits)
    """Queue bounds and the cancel deadline."""
    session_limits: SessionLimits = field(default_factory=SessionLimits)
    """Upload limits."""
    data_roots: tuple[Path, ...] = ()
    """Folders datasets and ns-train runs may be opened from (the uploads always may)."""
    allowed_editors: tuple[str, ...] = ()
    """Editor import paths ("pkg.mod:Factory") allowed besides the registered editors."""
    ray_address: str | None = None
    """Ray cluster the sessions' editor pools run on (None: a Ray instance on this machine,
    started by the worker for the first session that asks for a pool)."""
    advertise: str | None = None
    """Endpoint written to the connection file instead of the bound one ("host:port" or
    "tcp://host:port"; a bare "host" keeps the bound port)."""


class Sidecar:
    """The server: sessions, jobs, events and the socket."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.server_id = uuid.uuid4().hex[:16]
        load_job_modules(config.job_modules)
        self.store = SessionStore(config.workdir, config.session_limits)
        self.store.clean_stale_state()
        self.store.page(None, 1)  # index the sessions now, not in the first handshake
        from sidecar.handlers import WEIGHTS

        WEIGHTS.current()  # likewise the weights look-up (its first call imports the hub library)
        self.endpoint = self._bind()
        self.hub = EventHub(
            self._push, load_mark=self._load_seq_mark, save_mark=self._save_seq_mark
        )
        self.jobs = JobManager(
            WorkerOptions(config.device, config.profile, config.job_modules,
                          PRELOAD_MODULES if config.preload else (),
                          allowed_editors=config.allowed_editors,
                          data_roots=config.data_roots, ray_address=config.ray_address),
            self._on_job_event,
            config.job_limits,
            session_dir_resolver=lambda sid: str(self.store.session_dir(sid)),
        )
        self.jobs.ensure_worker()  # warm from the start; reports the device's name and memory
        if config.preload:
            threading.Thread(target=_preload, args=(SERVER_PRELOAD,), daemon=True,
                             name="sidecar-preload").start()
        self.recovered: dict[str, list[str]] = {}
        self._running = True
        from sidecar.handlers import HANDLERS  # late: handlers import this module's types

        self._handlers = HANDLERS
        # Written last: a client that sees the file gets answered at once (its handshake
        # limit is 2 s), not after the set-up above.
        self.connection_file = write_connection_file(
            self.config.workdir / CONNECTION_FILE, self._connection_info
        )

    # ----- setup -------------------------------------------------------------------------
    def _bind(self) -> ServerEndpoint:
        key = new_key()
        curve_secret = curve_public = None
        if self.config.curve:
            from protocol.connection import load_curve_keypair, write_curve_keypair

            key_file = self.config.workdir / CURVE_KEY_FILE
            if not key_file.exists():
                write_curve_keypair(key_file)
            curve_public, curve_secret = load_curve_keypair(key_file)
        endpoint = ServerEndpoint(
            resolve_bind(self.config.bind, self.config.workdir),
            key,
            curve_secret_key=curve_secret,
            allow_insecure_remote=self.config.allow_insecure_remote,
        )
        self._connection_info = ConnectionInfo(
            advertised_endpoint(endpoint.endpoint, self.config.advertise), key,
            pid=os.getpid(), curve_server_public_key=curve_public,
        )  # fmt: skip
        return endpoint

    def recover_sessions(self) -> dict[str, list[str]]:
        """Turns a killed sidecar left running become interrupted (finished ones untouched)."""
        from sidecar import workspaces

        for meta in self.store.list():
            session_id = meta["id"]
            try:
                interrupted = workspaces.recover(self.store.workspace_dir(session_id))
            except Exception:  # one broken session must not keep the others offline
                log.exception("recovery of session %s failed", session_id)
                continue
            self._fail_stale_jobs(session_id)
            if interrupted:
                self.recovered[session_id] = interrupted
        return self.recovered

    def _fail_stale_jobs(self, session_id: str) -> None:
        meta = self.store.read(session_id)
        for record in meta.get("jobs", []):
            if record.get("state") in ("queued", "running"):
                record = {**record, "state": "failed", "reason": "sidecar_stopped",
                          "error": "the sidecar stopped before the job ended"}
                self.store.record_job(session_id, record)

    # ----- the loop ----------------------------------------------------------------------
    def serve_forever(self) -> None:
        while self._running:
            try:
                self.step()
            except Exception:  # a bug in one turn must not take the sessions' server down
                log.exception("sidecar loop turn failed")
                time.sleep(0.1)

    def stop(self) -> None:
        """Ask the loop to end after the current turn (safe from a signal handler)."""
        self._running = False

    def step(self) -> None:
        """One turn: wait briefly for a request or a worker report, handle what arrived."""
        poller = zmq.Poller()
        poller.register(self.endpoint.socket, zmq.POLLIN)
        worker_fd = self.jobs.fileno()
        if worker_fd is not None:
            poller.register(worker_fd, zmq.POLLIN)
        try:
            ready = dict(poller.poll(self.config.poll_timeout_ms))
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EINTR:
                return
            raise
        if self.endpoint.socket in ready:
            for _ in range(64):  # bounded, so job reports are never starved
                incoming = self.endpoint.recv(0)
                if incoming is None:
                    break
                self._dispatch(incoming)
        self.jobs.poll()

    def _dispatch(self, incoming: Incoming) -> None:
        message = incoming.message
        parent = incoming.envelope.msg_id
        handler = self._handlers.get(type(message).type_name)
        if handler is None and type(message).type_name in job_kinds():
            from sidecar.handlers import submit_job

            handler = submit_job
        try:
            if handler is None:
                raise SidecarError(
                    "unknown_job_kind", f"this sidecar does not serve {message.type_name!r}"
                )
            reply = handler(self, incoming)
        except SidecarError as exc:
            self.endpoint.error(incoming.identity, _PROTOCOL_CODES[exc.code], exc.message,
                                parent_id=parent, detail=exc.code)
            return
        except Exception as exc:  # a handler bug answers `internal`, never kills the loop
            if is_disk_full(exc):
                self.endpoint.error(incoming.identity, "no_space",
                                    f"the sidecar's disk is full: {exc}"[:4000],
                                    parent_id=parent, detail="no_space")
                return
            log.exception("handler for %s failed", message.type_name)
            self.endpoint.error(incoming.identity, "internal", f"{type(exc).__name__}: {exc}",
                                parent_id=parent, detail=traceback.format_exc()[-60000:])
            return
        if reply is None:
            return
        try:
            self.endpoint.reply(incoming.identity, reply, parent_id=parent)
        except Exception as exc:  # e.g. a reply over the frame caps: say so instead
            log.exception("could not send the reply to %s", message.type_name)
            self.endpoint.error(incoming.identity, "internal",
                                f"reply could not be sent: {exc}"[:4000], parent_id=parent)

    # ----- events ------------------------------------------------------------------------
    def _push(self, identities: list[bytes], message: Message, session: str, seq: int,
              parent_id: str | None) -> list[bytes]:
        return self.endpoint.push_event(identities, message, session=session, seq=seq,
                                        parent_id=parent_id)

    def _load_seq_mark(self, session_id: str) -> int | None:
        try:
            mark = self.store.read(session_id).get("event_seq_mark")
        except SidecarError:
            return None
        return int(mark) if isinstance(mark, int) else None

    def _save_seq_mark(self, session_id: str, seq: int) -> None:
        with contextlib.suppress(SidecarError):  # the session was deleted meanwhile
            self.store.update(session_id, event_seq_mark=seq)

    def jobs_ahead(self, job: Job) -> int:
        """Protocol queue position: 0 = running or starts now, n = n jobs ahead."""
        position = self.jobs.position(job)
        if position is None or position == 0:
            return 0
        return position - 1 + (1 if self.jobs.running is not None else 0)

    def job_info(self, job: Job) -> JobInfo:
        progress = job.progress or {}
        message = job.error or str(progress.get("message", "") or "")
        return JobInfo(
            job_id=job.id,
            session_id=job.session_id or "",
            kind=job.kind,
            state=job.state,
            queue_position=None if job.state not in ("queued", "running") else self.jobs_ahead(job),
            step=int(progress.get("step", 0)),
            total=int(progress.get("total", 0)),
            fraction=_job_fraction(progress),
            submitted_ts=job.created,
            last_progress_ts=job.last_progress_at,
            message=message[:4096],
        )

    def _on_job_event(self, job: Job, kind: str, data: dict) -> None:
        """Turn a job manager report into protocol events (and session history)."""
        if job.session_id is None:
            return
        if kind in ("job.failed", "job.cancelled"):
            # Before the event goes out, so a client that reacts to it can resume at once.
            self._release_nodes(job)
        for message in self._job_messages(job, kind, data):
            if isinstance(message, _FinishedLater):
                message = message.build()
            try:
                self.hub.publish(job.session_id, message, parent_id=job.origin)
            except Exception as exc:  # e.g. a result too large for one frame
                log.exception("could not publish %s of job %s", message.type_name, job.id)
                if message.type_name != "job.finished":
                    note = f"{message.type_name} not sent: {exc}"[:4000]
                    job.result = {**(job.result or {}), "result_not_sent": note}
        if kind in ("job.queued", "job.started", "job.finished", "job.failed",
                    "job.cancelled"):
            self._record_history(job)

    def _release_nodes(self, job: Job) -> None:
        """Nodes the ended job left "running" (its worker died, its disk filled up) become
        interrupted, so resume, discard and a new base training work without a restart."""
        from sidecar import workspaces

        assert job.session_id is not None
        if job.started is None:
            return  # cancelled while queued: it wrote nothing (and another job may be running)
        # One job runs at a time and this one has ended: nothing else can own its nodes.
        try:
            root = self.store.workspace_dir(job.session_id)
            released = workspaces.release_running(
                root, f"job {job.id} ended ({job.state}: {job.reason or 'stopped'})")
        except SidecarError:
            return  # the session was deleted meanwhile
        except Exception:  # e.g. the disk is still full: the next start-up recovers it
            log.exception("could not release the nodes of job %s", job.id)
            return
        if released:
            log.info("session %s: %s marked interrupted after job %s ended",
                     job.session_id, ", ".join(released), job.id)

    def _record_history(self, job: Job) -> None:
        assert job.session_id is not None
        try:
            # The event mark rides along, so numbers stay increasing even after a kill -9.
            self.store.record_job(job.session_id, _history_record(job),
                                  event_seq_mark=self.hub.last_seq(job.session_id))
        except OSError:
            log.exception("could not record job %s in session %s", job.id, job.session_id)

    def _job_messages(self, job: Job, kind: str, data: dict) -> list[Message | _FinishedLater]:
        turn_id = (job.result or {}).get("turn_id") or job.requested_turn
        if kind in ("job.queued", "job.position"):
            return [JobQueued(job_id=job.id, kind=job.kind, position=self.jobs_ahead(job))]
        if kind == "job.started":
            return [JobStarted(job_id=job.id, kind=job.kind, turn_id=job.requested_turn)]
        if kind == "job.progress":
            return [_progress_message(job.id, data)]
        if kind == "job.preview":
            return [_preview_message(job.id, job, data)]
        if kind == "job.finished":
            # Results can be large (point clouds): sent once, kept only in the bounded ring.
            event = (job.result or {}).pop("event", None)
            extra = [event] if isinstance(event, Message) else []
            return [*extra, _FinishedLater(job, turn_id)]
        if kind == "job.failed":
            reason = f"{data.get('reason')}: {data.get('error')}"
            return [JobFailed(job_id=job.id, kind=job.kind, reason=reason[:4096],
                              traceback=(data.get("traceback") or "")[-65536:])]
        if kind == "job.cancelled":
            return [JobCancelled(job_id=job.id, kind=job.kind, turn_id=turn_id)]
        return []

    # ----- shutdown ----------------------------------------------------------------------
    def close(self) -> None:
        """Cancel/stop the job, save event marks, close the socket. Sessions stay on disk."""
        self.jobs.shutdown(timeout_s=10.0)
        self.hub.save_marks()
        self.endpoint.close()


WILDCARD_HOSTS = frozenset({"0.0.0.0", "*", "::", "[::]"})
"""Bind addresses that mean "every interface" (no client can connect to them as such)."""


def advertised_endpoint(bound: str, advertise: str | None) -> str:
    """The endpoint clients should connect to, for the connection file.

    `advertise` ("host", "host:port" or "tcp://host:port") wins; a bare host keeps the bound
    port. Without it, a wildcard bind is advertised under this machine's name.
    """
    scheme, _, address = bound.partition("://")
    if scheme != "tcp":
        return bound
    bound_host, _, bound_port = address.rpartition(":")
    if advertise:
        text = advertise.removeprefix("tcp://")
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            host, port = text, bound_port
        return f"tcp://{host}:{port}"
    if bound_host in WILDCARD_HOSTS:
        return f"tcp://{socket.getfqdn()}:{bound_port}"
    return bound


class _FinishedLater:
    """job.finished, built after the result event so it can say that one was not sent."""

    type_name = "job.finished"

    def __init__(self, job: Job, turn_id: str | None) -> None:
        self.job, self.turn_id = job, turn_id

    def build(self) -> JobFinished:
        summary = {k: v for k, v in (self.job.result or {}).items()
                   if v is None or isinstance(v, (str, int, float, bool))}
        return JobFinished(job_id=self.job.id, kind=self.job.kind, turn_id=self.turn_id,
                           result=summary)


def resolve_bind(bind: str, workdir: Path) -> str:
    """The endpoint to bind for `bind` ("local" resolved for this OS)."""
    if bind != LOCAL_BIND:
        return bind
    if os.name == "posix" and zmq.has("ipc"):
        return private_ipc_endpoint(workdir / IPC_DIR)
    return "tcp://127.0.0.1:0"  # Windows: pyzmq may lack ipc://, and ACLs differ


def _preload(module: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except Exception:  # the request that needs it reports the real error
        log.exception("preloading %s failed", module)


def _progress_message(job_id: str, data: dict) -> JobProgress:
    loss = data.get("loss")
    eta = data.get("eta_s")
    return JobProgress(
        job_id=job_id,
        step=max(0, int(data.get("step", 0))),
        total=max(0, int(data.get("total", 0))),
        loss=None if loss is None else float(loss),
        eta_s=None if eta is None or not np.isfinite(eta) else max(0.0, float(eta)),
        message=_phase_message(data),
        fraction=_job_fraction(data),
        phase=str(data.get("phase") or "")[:64],
        editors=_editor_statuses(data),
    )


def _editor_statuses(data: dict) -> tuple[EditorStatus, ...]:
    """The editor pool's actors from a turn's progress details (none without a pool)."""
    extra = data.get("extra") or {}
    names = ("editor", "device", "edits", "s_per_edit", "alive")
    return tuple(
        EditorStatus(**{name: actor[name] for name in names})
        for actor in extra.get("editors", ())[:MAX_EDITORS]
    )


def _job_fraction(data: dict) -> float:
    """The one bar's position of a reported ProgressEvent map (0 before any report)."""
    given = data.get("fraction")
    event = ProgressEvent(
        phase="",
        step=int(data.get("step", 0)),
        total=int(data.get("total", 0)),
        fraction=None if given is None else float(given),
    )
    fraction = event.job_fraction
    return fraction if np.isfinite(fraction) else 0.0


def _phase_message(data: dict) -> str:
    """ "phase: detail" (e.g. "prerender: images/frame_00003.png"), so clients can label."""
    phase, detail = str(data.get("phase") or ""), str(data.get("message") or "")
    text = f"{phase}: {detail}" if phase and detail else phase or detail
    return text[:4096]


def _preview_message(job_id: str, job: Job, data: dict) -> JobPreview:
    image = np.asarray(data["image"])
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    step = data.get("step")
    if step is None:  # a frame that does not say: the job's last reported step
        step = (job.progress or {}).get("step", 0)
    view = data.get("view_name")
    return JobPreview(job_id=job_id, step=int(step), image=image,
                      view_name=None if view is None else str(view))


def _history_record(job: Job) -> dict:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "created": job.created,
        "started": job.started,
        "ended": job.ended,
        "reason": job.reason,
        "error": job.error,
        "turn_id": (job.result or {}).get("turn_id") or job.requested_turn,
        "cancel_latency_s": job.cancel_latency_s,
    }
