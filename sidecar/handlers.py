"""Request handlers: one thin function per request type.

Each takes the `Sidecar` and the verified request, calls the session store, the job manager
or `sidecar.workspaces` (which calls edit3d), and returns the reply message. A refusal is a
`SidecarError`, which the loop turns into an error reply with a stable code.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edit3d.editing.settings import EditorSettings
from edit3d.field.catalogue import DEFAULT_PRESET
from edit3d.models.sources import weights_presence
from protocol import messages as m
from protocol.server import Incoming
from protocol.version import PROTOCOL_VERSION
from sidecar import __version__, downloads, workspaces
from sidecar.edit3d_jobs import PREPARE_KIND, PrepareSession
from sidecar.errors import SidecarError
from sidecar.kinds import job_kinds
from sidecar.policy import check_backend, check_editor, check_preset, resolve_source_path

if TYPE_CHECKING:
    from sidecar.server import Sidecar

Handler = Callable[["Sidecar", Incoming], "m.Message | None"]
UPLOAD_CHUNK_BYTES = 8 << 20
HANDSHAKE_SESSIONS = 100
"""Newest sessions listed in the handshake reply (the rest: `session.list` pages)."""
MAX_STATUS_JOBS = 1000
"""Newest jobs listed by one job.status reply."""


class WeightsPresence:
    """Which registered models' real weights this machine has, re-read at most every
    `max_age_s` (file checks, ~20 ms; the first look-up also imports the hub library, so the
    server makes it before it accepts connections, never inside a client's handshake)."""

    def __init__(self, max_age_s: float = 30.0) -> None:
        self.max_age_s = max_age_s
        self._value: dict[str, bool] = {}
        self._read_at = -float("inf")

    def current(self) -> dict[str, bool]:
        now = time.monotonic()
        if now - self._read_at > self.max_age_s:
            self._value, self._read_at = weights_presence(), now
        return self._value


WEIGHTS = WeightsPresence()


# ----- handshake and health ------------------------------------------------------------


def handshake(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    ids, _more, count = sidecar.store.page(None, HANDSHAKE_SESSIONS)
    sessions = _session_infos(sidecar, ids)
    capabilities = [*sorted(job_kinds()), "upload", "download", f"profile.{sidecar.config.profile}"]
    info = sidecar.jobs.device_info
    weights = WEIGHTS.current()
    return m.HandshakeReply(
        server_version=PROTOCOL_VERSION,
        server_id=sidecar.server_id,
        sidecar_version=__version__,
        device=sidecar.config.device,
        gpu_name=info.get("gpu_name"),
        gpu_memory_total=info.get("gpu_memory_total"),
        gpu_memory_free=info.get("gpu_memory_free"),
        capabilities=tuple(capabilities),
        sessions=sessions,
        buffer_integrity=sidecar.endpoint.buffer_integrity,
        session_count=count,
        weights_present=tuple(name for name, present in weights.items() if present),
        weights_missing=tuple(name for name, present in weights.items() if not present),
        editor_defaults=_editor_defaults(),
    )


def _editor_defaults() -> m.EditorSettings:
    """edit3d's editor settings defaults, the values an unset request field gets."""
    return m.EditorSettings(**dataclasses.asdict(EditorSettings()))


def heartbeat(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    running = sidecar.jobs.running
    return m.HeartbeatReply(
        server_time=_now(),
        busy=running is not None,
        running_job_id=None if running is None else running.id,
        last_progress_ts=None if running is None else running.last_progress_at,
        queue_length=len(sidecar.jobs.queued()),
        gpu_memory_free=sidecar.jobs.device_info.get("gpu_memory_free"),
    )


# ----- sessions ------------------------------------------------------------------------


def session_create(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    request: m.SessionCreate = incoming.message  # type: ignore[assignment]
    check_preset(request.preset, check_backend(request.backend))
    source, path = "upload", None
    if request.dataset_path is not None:
        source, path = "dataset", _allowed_source(sidecar, request.dataset_path, "dataset_path")
    elif request.nerfstudio_run is not None:
        source, path = "nerfstudio_run", _allowed_source(sidecar, request.nerfstudio_run,
                                                         "nerfstudio_run")
    if path is not None:
        # Refused before anything is created: a busy answer leaves no session behind.
        sidecar.jobs.check_room()
    pool = None
    if request.editors is not None:
        pool = {"editors": request.editors, "staleness": request.staleness}
    meta = sidecar.store.create(request.name, source=source, source_path=path,
                                preset=request.preset, backend=request.backend,
                                editor_pool=pool)
    session_id = meta["id"]
    sidecar.hub.subscribe(session_id, incoming.identity)
    if path is not None:
        # Reading the dataset runs nerfstudio's dataparser: done by the worker, not here.
        try:
            sidecar.jobs.submit(PREPARE_KIND, session_id, PrepareSession(),
                                origin=incoming.envelope.msg_id)
        except SidecarError:
            sidecar.store.delete(session_id)
            sidecar.hub.forget_session(session_id)
            raise
    return _summary(sidecar, session_id)


def session_list(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    request: m.SessionList = incoming.message  # type: ignore[assignment]
    ids, next_after, total = sidecar.store.page(request.after, request.limit)
    return m.SessionListReply(sessions=_session_infos(sidecar, ids), next_after=next_after,
                              total=total)


def _session_infos(sidecar: Sidecar, ids: list[str]) -> tuple[m.SessionInfo, ...]:
    infos = []
    for session_id in ids:
        try:
            infos.append(_session_info(sidecar, sidecar.store.read(session_id)))
        except (OSError, ValueError, SidecarError):
            continue  # deleted meanwhile, or unreadable: listed by nobody
    return tuple(infos)


def session_open(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    session_id = incoming.message.session_id  # type: ignore[attr-defined]
    summary = _summary(sidecar, session_id)
    sidecar.hub.subscribe(session_id, incoming.identity)
    return summary


def session_delete(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    session_id = incoming.message.session_id  # type: ignore[attr-defined]
    sidecar.store.session_dir(session_id)  # not_found first
    if sidecar.jobs.session_busy(session_id):
        raise SidecarError("session_busy", f"session {session_id} has a queued or running job")
    sidecar.store.delete(session_id)
    sidecar.hub.forget_session(session_id)
    return m.Ok(detail=f"deleted {session_id}")


def turn_checkout(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    request: m.TurnCheckout = incoming.message  # type: ignore[assignment]
    root = sidecar.store.workspace_dir(request.session_id)
    if sidecar.jobs.session_busy(request.session_id):
        raise SidecarError("session_busy", "wait for the session's job to end before checkout")
    if not workspaces.workspace_exists(root):
        raise SidecarError("not_found", "the session has no turns yet")
    try:
        workspaces.checkout(root, request.turn_id)
    except (KeyError, ValueError) as exc:
        raise SidecarError("bad_request", str(exc)) from exc
    return _summary(sidecar, request.session_id)


# ----- uploads -------------------------------------------------------------------------


def upload_begin(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    request: m.UploadBegin = incoming.message  # type: ignore[assignment]
    upload_id = sidecar.store.begin_upload(
        request.session_id, request.path, request.size, request.sha256
    )
    return m.UploadReady(upload_id=upload_id, chunk_size=UPLOAD_CHUNK_BYTES)


def upload_chunk(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    request: m.UploadChunk = incoming.message  # type: ignore[assignment]
    received = sidecar.store.write_chunk(request.upload_id, request.offset,
                                         np.ascontiguousarray(request.data).tobytes())
    return m.Ok(detail=str(received))


def upload_commit(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    request: m.UploadCommit = incoming.message  # type: ignore[assignment]
    upload = sidecar.store.upload(request.upload_id)
    relative, size, sha = upload.relative_path, upload.size, upload.sha256
    sidecar.store.commit_upload(request.upload_id)
    return m.UploadDone(path=relative, size=size, sha256=sha)


def upload_abort(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    sidecar.store.abort_upload(incoming.message.upload_id)  # type: ignore[attr-defined]
    return m.Ok()


# ----- downloads -------------------------------------------------------------------------


def download_chunk(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    request: m.DownloadChunk = incoming.message  # type: ignore[assignment]
    path = downloads.export_file(sidecar.store.session_dir(request.session_id), request.path)
    data, size, sha = downloads.read_chunk(path, request.offset, request.length)
    return m.DownloadData(path=request.path, offset=request.offset, size=size, sha256=sha,
                          data=np.frombuffer(data, dtype=np.uint8))


# ----- jobs ----------------------------------------------------------------------------


def submit_job(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    """Any request whose type is a registered job kind: queue it, answer at once."""
    request = incoming.message
    session_id = getattr(request, "session_id", None)
    if not isinstance(session_id, str):
        raise SidecarError("bad_request", f"{request.type_name} requests must name a session")
    editor = getattr(request, "editor", None)
    if editor is not None:
        check_editor(editor, sidecar.config.allowed_editors)
    sidecar.store.session_dir(session_id)  # not_found before queueing
    if request.type_name == "job.train_base":
        check_preset(request.preset, sidecar.store.read(session_id).get("backend"))
    sidecar.hub.subscribe(session_id, incoming.identity)
    job = sidecar.jobs.submit(request.type_name, session_id, request,
                              origin=incoming.envelope.msg_id)
    return m.JobAccepted(job_id=job.id, kind=job.kind, queue_position=sidecar.jobs_ahead(job))


def job_cancel(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    """Queued: cancelled at once; running: asked to stop (job.cancelled follows)."""
    job = sidecar.jobs.cancel(incoming.message.job_id)  # type: ignore[attr-defined]
    return m.Ok(detail=job.state)


def job_status(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    """Live jobs, plus jobs only the sessions' histories remember (e.g. from before a restart)."""
    request: m.JobStatus = incoming.message  # type: ignore[assignment]
    live = [job for job in sidecar.jobs.jobs(request.session_id)
            if request.job_id in (None, job.id)]
    infos = [sidecar.job_info(job) for job in live]
    known = {job.id for job in live}
    for session_id, record in _history(sidecar, request.session_id):
        if record.get("id") not in known and request.job_id in (None, record.get("id")):
            infos.append(_history_info(session_id, record))
    if request.job_id is not None and not infos:
        raise SidecarError("not_found", f"no job {request.job_id!r}")
    infos.sort(key=lambda info: info.submitted_ts)
    return m.JobStateReply(jobs=tuple(infos[-MAX_STATUS_JOBS:]))


def _history(sidecar: Sidecar, session_id: str | None) -> list[tuple[str, dict]]:
    ids = [session_id] if session_id is not None else [s["id"] for s in sidecar.store.list()]
    return [(sid, record) for sid in ids for record in sidecar.store.read(sid).get("jobs", [])]


def _history_info(session_id: str, record: dict) -> m.JobInfo:
    return m.JobInfo(
        job_id=str(record["id"]),
        session_id=session_id,
        kind=str(record.get("kind", "job")),
        state=record.get("state", "failed"),
        queue_position=None,
        submitted_ts=float(record.get("created") or 0.0),
        message=str(record.get("error") or record.get("reason") or "")[:4096],
    )


def events_since(sidecar: Sidecar, incoming: Incoming) -> m.Message:
    request: m.EventsSince = incoming.message  # type: ignore[assignment]
    sidecar.store.session_dir(request.session_id)
    sidecar.hub.subscribe(request.session_id, incoming.identity)
    replayed, complete = sidecar.hub.replay(incoming.identity, request.session_id,
                                            request.after_seq)
    jobs = () if complete else tuple(
        sidecar.job_info(job) for job in sidecar.jobs.jobs(request.session_id)
    )
    return m.EventsReplayed(
        session_id=request.session_id,
        after_seq=request.after_seq,
        last_seq=sidecar.hub.last_seq(request.session_id),
        replayed=replayed,
        complete=complete,
        jobs=jobs,
    )


# ----- helpers -------------------------------------------------------------------------


def _now() -> float:
    import time

    return time.time()


def _allowed_source(sidecar: Sidecar, text: str, field_name: str) -> str:
    return str(resolve_source_path(text, field_name, sidecar.config.data_roots,
                                   sidecar.store.root))


def _session_info(sidecar: Sidecar, meta: dict) -> m.SessionInfo:
    summary = _workspace_summary(sidecar, meta["id"])
    return m.SessionInfo(
        session_id=meta["id"],
        name=meta["name"],
        created_ts=float(meta.get("created_ts", 0.0)),
        head=summary.head,
        turn_count=len(summary.turns),
        busy=sidecar.jobs.session_busy(meta["id"]),
    )


def _workspace_summary(sidecar: Sidecar, session_id: str) -> workspaces.WorkspaceSummary:
    return workspaces.summarize(sidecar.store.workspace_dir(session_id))


def _summary(sidecar: Sidecar, session_id: str) -> m.SessionSummary:
    meta = sidecar.store.read(session_id)
    summary = _workspace_summary(sidecar, session_id)
    names, c2w, intrinsics = workspaces.load_views(sidecar.store.session_dir(session_id))
    turns = tuple(
        m.TurnInfo(
            turn_id=turn.turn_id,
            parent=turn.parent,
            kind=turn.kind,  # type: ignore[arg-type]
            status=turn.status,  # type: ignore[arg-type]
            instruction=turn.instruction,
            created_ts=turn.created_ts,
            finished_ts=turn.finished_ts,
            step=turn.step,
            total_steps=turn.total_steps,
            edit_queries=turn.edit_queries,
            keep_queries=turn.keep_queries,
            params=turn.params,
        )
        for turn in summary.turns
    )
    return m.SessionSummary(
        session_id=session_id,
        name=meta["name"],
        preset=meta.get("preset", DEFAULT_PRESET),
        backend=summary.backend or meta.get("backend"),
        head=summary.head,
        turns=turns,
        view_names=tuple(names),
        view_c2w=c2w,
        view_intrinsics=intrinsics,
        last_seq=sidecar.hub.last_seq(session_id),
    )


HANDLERS: dict[str, Handler] = {
    "handshake": handshake,
    "heartbeat": heartbeat,
    "session.create": session_create,
    "session.list": session_list,
    "session.open": session_open,
    "session.delete": session_delete,
    "turn.checkout": turn_checkout,
    "upload.begin": upload_begin,
    "upload.chunk": upload_chunk,
    "upload.commit": upload_commit,
    "upload.abort": upload_abort,
    "download.chunk": download_chunk,
    "job.cancel": job_cancel,
    "job.status": job_status,
    "events.since": events_since,
}
