"""The one link to the sidecar: a protocol client polled by one bpy.app.timers function.

Everything here runs on Blender's main thread. `poll_once(context)` is the whole poll step:
it reads the socket without blocking, applies replies and events to `scene.edit3d`, sends
heartbeats, notices a silent sidecar and reconnects. The timer only calls it; tests call it
directly (timers never fire in the bpy module).

Requests go out with `request(message, on_reply)`; the reply (matched by parent id) or a
timeout calls back on a later poll. Nothing waits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from . import scene_io
from .props import PRESETS

CLIENT_NAME = "blender-addon 0.1.0"
PREVIEW_IMAGE = "Edit3D Render"
MASK_IMAGE = "Edit3D Mask"
HEATMAP_IMAGE = "Edit3D Heatmap"
EXPORT_COLLECTION = "Edit3D Exports"
MAX_REPORTS = 20
RECONNECT_EVERY_S = 2.0
IDLE_INTERVAL_S = 0.5
LONG_JOBS = ("job.train_base", "job.run_turn", "job.resume_turn", "job.refine")
"""Jobs whose end changes the turn history (the session summary is refreshed after them)."""

ACTIVE_JOB_STATES = ("SUBMITTED", "QUEUED", "RUNNING")

ReplyHandler = Callable[[Any, Any], None]
ErrorHandler = Callable[[Any, str], None]


@dataclass(frozen=True)
class LinkSettings:
    """Where the sidecar is and how patient to be (from the add-on preferences)."""

    endpoint: str = ""
    """ZeroMQ endpoint, used when no connection file is given."""
    key_hex: str = ""
    """HMAC key (hex), used with endpoint."""
    connection_file: str = ""
    """The sidecar's connection file (endpoint + key); preferred."""
    request_timeout_s: float = 10.0
    """A request with no reply after this long fails."""
    heartbeat_interval_s: float = 2.0
    """Heartbeat period while connected."""
    lost_after_s: float = 6.0
    """Silence after which the sidecar is shown as lost and reconnected."""
    poll_interval_s: float = 0.1
    """Timer period while connected or while a job runs."""


@dataclass
class Pending:
    """A request waiting for its reply."""

    type_name: str
    sent_at: float
    timeout_s: float
    on_reply: ReplyHandler | None
    on_error: ErrorHandler | None


@dataclass
class SessionViews:
    """The open session's dataset cameras (arrays are too big for scene properties)."""

    names: list[str]
    c2w: np.ndarray
    intrinsics: np.ndarray

    def pinholes(self) -> list[scene_io.CameraPinhole]:
        out = []
        for c2w, k in zip(self.c2w, self.intrinsics, strict=True):
            fx, fy, cx, cy, w, h = (float(v) for v in k)
            out.append(scene_io.CameraPinhole(c2w, fx, fy, cx, cy, int(w), int(h)))
        return out


@dataclass
class JobRoute:
    """What to do with a job's results when they arrive."""

    kind: str
    silent: bool = False
    """Live-preview renders do not take over the panel's job display."""
    into_scene: bool = True
    """Exports: build Blender objects from the returned arrays."""


@dataclass
class SidecarLink:
    """Connection state; one module-level instance (`LINK`)."""

    client: Any = None
    settings: LinkSettings = field(default_factory=LinkSettings)
    wanted: bool = False
    """The user asked to be connected (a lost link is retried)."""
    handshaken: bool = False
    pending: dict[str, Pending] = field(default_factory=dict)
    jobs: dict[str, JobRoute] = field(default_factory=dict)
    views: SessionViews | None = None
    last_heartbeat_sent: float = 0.0
    last_contact: float = 0.0
    next_reconnect_at: float = 0.0
    last_live_pose: tuple[float, ...] | None = None
    next_live_at: float = 0.0
    local_process: subprocess.Popen | None = None
    autoconnect_file: Path | None = None
    """Connection file of a sidecar this Blender started: connect once it is written."""
    autoconnect_since: float = 0.0
    """Wall-clock start of that sidecar (an older file is a previous run's)."""
    uploads: Any = None
    export_results: list[Any] = field(default_factory=list)
    """ExportResult messages received (newest last; tests and the demo read them)."""
    render_results: list[Any] = field(default_factory=list)
    """RenderResult messages received (newest last)."""


LINK = SidecarLink()


# --- protocol access (imported lazily: pyzmq is only needed once the user connects) --------


def protocol_module() -> Any:
    from . import protocol

    return protocol


def messages() -> Any:
    from .protocol import messages as msgs

    return msgs


# --- reports -----------------------------------------------------------------------------


def add_report(context: Any, level: str, message: str) -> None:
    """Keep a message for the panel (errors arrive between operators) and print it."""
    props = context.scene.edit3d
    item = props.reports.add()
    item.level = level
    item.message = message[:1024]
    while len(props.reports) > MAX_REPORTS:
        props.reports.remove(0)
    print(f"Edit3D {level}: {message}")


def _pop_window_report(context: Any, message: str) -> None:
    """Show a popup when Blender has a UI (popup_menu crashes a background Blender)."""
    wm = getattr(context, "window_manager", None)
    if bpy.app.background or wm is None or not getattr(wm, "windows", None):
        return

    def draw(menu: Any, _context: Any) -> None:
        menu.layout.label(text=message[:200])

    # no window under the timer: the panel shows the report instead
    with contextlib.suppress(RuntimeError):
        wm.popup_menu(draw, title="Edit3D", icon="ERROR")


def report_error(context: Any, message: str) -> None:
    add_report(context, "ERROR", message)
    _pop_window_report(context, message)


# --- connecting --------------------------------------------------------------------------


def settings_from_preferences(prefs: Any) -> LinkSettings:
    return LinkSettings(
        endpoint=prefs.endpoint,
        key_hex=prefs.key_hex,
        connection_file=bpy.path.abspath(prefs.connection_file) if prefs.connection_file else "",
        request_timeout_s=prefs.request_timeout_s,
        heartbeat_interval_s=prefs.heartbeat_interval_s,
        lost_after_s=prefs.lost_after_s,
        poll_interval_s=prefs.poll_interval_s,
    )


def online_access_allowed() -> bool:
    return bool(bpy.app.online_access)


def _make_client(settings: LinkSettings) -> Any:
    proto = protocol_module()
    if settings.connection_file:
        return proto.Client(Path(settings.connection_file), client_name=CLIENT_NAME)
    if not settings.endpoint or not settings.key_hex:
        raise ValueError("set a connection file, or an endpoint and key, in the preferences")
    try:
        key = bytes.fromhex(settings.key_hex.strip())
    except ValueError as exc:
        raise ValueError(f"key is not hexadecimal: {exc}") from None
    return proto.Client(endpoint=settings.endpoint, key=key, client_name=CLIENT_NAME)


def connect(context: Any, settings: LinkSettings) -> None:
    """Open the socket and send the handshake; the reply arrives on a later poll.

    Raises PermissionError when Blender's online access is off, ValueError/OSError for a
    bad configuration (missing connection file, bad key). Never waits on the network.
    """
    if not online_access_allowed():
        raise PermissionError(
            "Online access is disabled: enable Preferences > System > Network > "
            "Allow Online Access to talk to the sidecar"
        )
    close_client()
    LINK.settings = settings
    LINK.client = _make_client(settings)
    LINK.wanted = True
    LINK.handshaken = False
    props = context.scene.edit3d
    props.connection_state = "CONNECTING"
    props.connection_message = f"waiting for {endpoint_label(settings)}"
    _send_handshake(context)
    ensure_timer()


def endpoint_label(settings: LinkSettings) -> str:
    return settings.connection_file or settings.endpoint


def _send_handshake(context: Any, timeout_s: float | None = None) -> None:
    version = tuple(protocol_module().PROTOCOL_VERSION)
    msg = messages().Handshake(client_version=version, client_name=CLIENT_NAME)
    request(context, msg, _on_handshake, _on_handshake_failed, timeout_s=timeout_s)


def disconnect(context: Any) -> None:
    """Close the link on the user's request (jobs on the sidecar keep running)."""
    LINK.wanted = False
    LINK.autoconnect_file = None
    close_client()
    props = context.scene.edit3d
    props.connection_state = "DISCONNECTED"
    props.connection_message = ""


def close_client() -> None:
    if LINK.client is not None:
        try:
            LINK.client.close()
        except Exception as exc:  # a half-open socket must not keep Blender from closing it
            print(f"Edit3D: closing the client failed: {exc}")
    LINK.client = None
    LINK.handshaken = False
    LINK.pending.clear()


def _on_handshake(context: Any, reply: Any) -> None:
    props = context.scene.edit3d
    mine = tuple(protocol_module().PROTOCOL_VERSION)
    if reply.server_version[0] != mine[0]:
        theirs = ".".join(map(str, reply.server_version))
        LINK.wanted = False
        close_client()
        props.connection_state = "DISCONNECTED"
        props.connection_message = "protocol version mismatch"
        report_error(
            context, f"The sidecar at {endpoint_label(LINK.settings)} speaks protocol {theirs}, "
            f"this add-on {mine[0]}.{mine[1]}: update one of them so the major versions match",
        )  # fmt: skip
        return
    LINK.handshaken = True
    LINK.autoconnect_file = None  # connected: a later disconnect must stay disconnected
    props.connection_state = "CONNECTED"
    props.connection_message = ""
    props.server_version = reply.sidecar_version or ".".join(map(str, reply.server_version))
    props.device = reply.device + (f" ({reply.gpu_name})" if reply.gpu_name else "")
    props.gpu_memory_total_gb = (reply.gpu_memory_total or 0) / 2**30
    props.gpu_memory_free_gb = (reply.gpu_memory_free or 0) / 2**30
    props.capabilities = ", ".join(reply.capabilities)
    fill_sessions(props, reply.sessions)
    if props.session_id:
        open_session(context, props.session_id, resync=True)


def fill_sessions(props: Any, sessions: Any) -> None:
    """Show the sidecar's sessions (newest first) so one can be opened."""
    props.sessions.clear()
    for info in sorted(sessions, key=lambda i: -i.created_ts):
        item = props.sessions.add()
        item.session_id, item.label = info.session_id, info.name
        item.turn_count, item.busy = info.turn_count, info.busy


def refresh_sessions(context: Any) -> None:
    def listed(ctx: Any, reply: Any) -> None:
        fill_sessions(ctx.scene.edit3d, reply.sessions)

    request(context, messages().SessionList(), listed)


def _on_handshake_failed(context: Any, message: str) -> None:
    props = context.scene.edit3d
    if props.connection_state == "LOST":
        props.connection_message = f"still unreachable: {message}"
        close_client()  # the next tick builds a fresh socket and tries again
        return
    LINK.wanted = False
    close_client()
    props.connection_state = "DISCONNECTED"
    props.connection_message = message
    report_error(
        context,
        f"No answer from the sidecar at {endpoint_label(LINK.settings)}: {message}. Is it "
        "running, and are the endpoint and key (connection file) right?",
    )


def _mark_lost(context: Any, why: str) -> None:
    props = context.scene.edit3d
    if props.connection_state != "LOST":
        report_error(context, f"Lost the sidecar ({why}); reconnecting")
    for pending in list(LINK.pending.values()):
        if pending.on_error is not None and pending.type_name != "handshake":
            pending.on_error(context, "connection lost")
    close_client()
    props.connection_state = "LOST"
    props.connection_message = why
    LINK.next_reconnect_at = time.monotonic()


def _try_reconnect(context: Any) -> None:
    if time.monotonic() < LINK.next_reconnect_at:
        return
    LINK.next_reconnect_at = time.monotonic() + max(RECONNECT_EVERY_S, LINK.settings.lost_after_s)
    try:
        LINK.client = _make_client(LINK.settings)  # re-reads a restarted sidecar's new key
    except (OSError, ValueError) as exc:
        context.scene.edit3d.connection_message = f"cannot reconnect yet: {exc}"
        return
    LINK.last_contact = time.monotonic()
    # a restarted sidecar answers at once; waiting longer than the loss delay only adds lag
    _send_handshake(
        context, timeout_s=min(LINK.settings.request_timeout_s, LINK.settings.lost_after_s)
    )


# --- requests ----------------------------------------------------------------------------


def request(
    context: Any,
    message: Any,
    on_reply: ReplyHandler | None = None,
    on_error: ErrorHandler | None = None,
    *,
    timeout_s: float | None = None,
    session: str | None = None,
) -> str:
    """Send a request now; on_reply(context, reply) or on_error(context, text) runs later."""
    if LINK.client is None:
        raise ConnectionError("not connected to a sidecar")
    try:
        msg_id = LINK.client.send(message, session=session)
    except protocol_module().RequestTimeout as exc:  # the socket's send queue is full
        raise ConnectionError(str(exc)) from None
    timeout = LINK.settings.request_timeout_s if timeout_s is None else timeout_s
    LINK.pending[msg_id] = Pending(message.type_name, time.monotonic(), timeout, on_reply, on_error)
    return msg_id


def is_ready() -> bool:
    """Connected and handshaken: requests other than the handshake may be sent."""
    return LINK.client is not None and LINK.handshaken


# --- the poll step -----------------------------------------------------------------------


def poll_once(context: Any) -> float | None:
    """One tick: drain the socket (non-blocking), dispatch, check timeouts and liveness.

    Returns the delay until the next tick, or None when there is nothing to watch (the
    timer then stops).
    """
    props = context.scene.edit3d
    if LINK.client is None:
        if LINK.wanted and props.connection_state == "LOST":
            _try_reconnect(context)
            return LINK.settings.poll_interval_s
        _check_local_process(context)
        _autoconnect(context)
        if LINK.client is not None:
            return LINK.settings.poll_interval_s
        return None if LINK.local_process is None else IDLE_INTERVAL_S
    for envelope in _drain():
        _dispatch(context, envelope)
    now = time.monotonic()
    _expire_requests(context, now)
    if LINK.client is not None and LINK.handshaken:
        _keep_alive(context, now)
        _live_preview_tick(context, now)
    _check_local_process(context)
    return LINK.settings.poll_interval_s


def _drain() -> list[Any]:
    try:
        return list(LINK.client.poll(0))
    except Exception as exc:  # a broken socket must surface as "lost", not kill the timer
        print(f"Edit3D: receive failed: {exc}")
        return []


def _expire_requests(context: Any, now: float) -> None:
    for msg_id, pending in list(LINK.pending.items()):
        if now - pending.sent_at > pending.timeout_s:
            LINK.pending.pop(msg_id, None)
            text = f"{pending.type_name}: no reply within {pending.timeout_s:g} s"
            if pending.on_error is not None:
                pending.on_error(context, text)
            else:
                report_error(context, text)


def _keep_alive(context: Any, now: float) -> None:
    settings = LINK.settings
    if now - LINK.last_contact > settings.lost_after_s:
        _mark_lost(context, f"silent for {now - LINK.last_contact:.1f} s")
        return
    heartbeat_pending = any(p.type_name == "heartbeat" for p in LINK.pending.values())
    if not heartbeat_pending and now - LINK.last_heartbeat_sent >= settings.heartbeat_interval_s:
        LINK.last_heartbeat_sent = now
        try:
            request(context, messages().Heartbeat(), None, lambda _c, _m: None)
        except ConnectionError as exc:
            _mark_lost(context, str(exc))


def _dispatch(context: Any, envelope: Any) -> None:
    LINK.last_contact = time.monotonic()
    context.scene.edit3d.last_contact = LINK.last_contact
    header, message = envelope.header, envelope.message
    # Job events also name the request that created their job (parent_id), but only a
    # message without an event sequence number is that request's reply.
    is_reply = header.parent_id is not None and header.seq is None
    pending = LINK.pending.pop(header.parent_id, None) if is_reply else None
    if pending is not None:
        _resolve(context, pending, message)
        return
    if header.seq is not None:
        context.scene.edit3d.event_seq = max(context.scene.edit3d.event_seq, header.seq)
    handler = EVENT_HANDLERS.get(message.type_name)
    if handler is not None:
        handler(context, message)


def _resolve(context: Any, pending: Pending, message: Any) -> None:
    if message.type_name == "error":
        text = f"{message.message} [{message.code}]"
        if pending.on_error is not None:
            pending.on_error(context, text)
        else:
            report_error(context, f"{pending.type_name} refused: {text}")
        return
    if message.type_name == "heartbeat.reply":
        _on_heartbeat(context, message)
    if pending.on_reply is not None:
        pending.on_reply(context, message)
    elif message.type_name in EVENT_HANDLERS:
        EVENT_HANDLERS[message.type_name](context, message)


def _on_heartbeat(context: Any, reply: Any) -> None:
    props = context.scene.edit3d
    if reply.gpu_memory_free is not None:
        props.gpu_memory_free_gb = reply.gpu_memory_free / 2**30
    if reply.busy and reply.running_job_id and props.job_id == reply.running_job_id:
        props.queue_position = 0


# --- sessions and turns ------------------------------------------------------------------


def open_session(context: Any, session_id: str, *, resync: bool = False) -> None:
    """Open (subscribe to) a session; refreshes turns and views.

    With resync (after a reconnect) the client asks for the events missed since the last
    one applied; the server re-sends them, then answers events.replayed.
    """
    request(context, messages().SessionOpen(session_id=session_id), _on_session_summary)
    seq = context.scene.edit3d.event_seq
    if resync and seq >= 0 and LINK.client is not None:
        LINK.client.follow(session_id, seq)
        LINK.client.resync(session_id)


def _on_session_summary(context: Any, summary: Any) -> None:
    props = context.scene.edit3d
    props.session_id = summary.session_id
    props.session_name = summary.name
    if summary.preset in {item[0] for item in PRESETS}:
        props.preset = summary.preset  # the session's, not what the panel last showed
    props.head = summary.head or ""
    props.turns.clear()
    for info in summary.turns:
        item = props.turns.add()
        item.turn_id = info.turn_id
        item.parent = info.parent or ""
        item.kind = info.kind
        item.status = info.status
        item.instruction = info.instruction or ""
        item.edit_queries = "; ".join(info.edit_queries)
        item.keep_queries = "; ".join(info.keep_queries)
        item.caption = str(info.params.get("caption", "") or "")
    for index, item in enumerate(props.turns):
        if item.turn_id == props.head:
            props.active_turn_index = index
    LINK.views = SessionViews(
        list(summary.view_names), np.asarray(summary.view_c2w), np.asarray(summary.view_intrinsics)
    )
    if props.event_seq < 0:
        props.event_seq = summary.last_seq
    if LINK.client is not None and LINK.client.last_seq(summary.session_id) is None:
        LINK.client.follow(summary.session_id, summary.last_seq)


def _on_events_replayed(context: Any, reply: Any) -> None:
    props = context.scene.edit3d
    props.event_seq = reply.last_seq  # replayed events came first; a restarted sidecar resets
    if not reply.complete:
        known = {job.job_id: job for job in reply.jobs}
        if props.job_id in known:
            _apply_job_info(props, known[props.job_id])
        elif props.job_state in ACTIVE_JOB_STATES:
            props.job_state = "FAILED"
            props.job_message = "the sidecar restarted and lost this job; resume its turn"
            report_error(context, f"{props.job_kind}: {props.job_message}")
        request(context, messages().SessionOpen(session_id=reply.session_id), _on_session_summary)


def _apply_job_info(props: Any, job: Any) -> None:
    state = {"queued": "QUEUED", "running": "RUNNING", "finished": "FINISHED",
             "failed": "FAILED", "cancelled": "CANCELLED"}.get(str(job.state))  # fmt: skip
    if state is not None:
        props.job_state = state
    props.step, props.total = job.step, job.total
    props.progress = job.step / job.total if job.total else 0.0
    props.job_message = job.message


def import_session_cameras(context: Any) -> list[Any]:
    """Create camera objects for the open session's dataset views (exact poses)."""
    if LINK.views is None:
        raise LookupError("no session is open: create or open one first")
    props = context.scene.edit3d
    return scene_io.import_cameras(
        context.scene, LINK.views.names, LINK.views.pinholes(), props.camera_collection
    )


# --- jobs --------------------------------------------------------------------------------


def submit_job(context: Any, message: Any, route: JobRoute | None = None) -> str:
    """Send a job request; the job becomes the panel's current job once accepted."""
    route = route or JobRoute(message.type_name)
    props = context.scene.edit3d
    if not route.silent:
        props.job_kind = message.type_name
        props.job_state = "SUBMITTED"
        props.job_id = ""
        props.progress = 0.0
        props.step = props.total = 0
        props.eta_s = -1.0
        props.job_message = ""

    def accepted(ctx: Any, reply: Any) -> None:
        LINK.jobs[reply.job_id] = route
        if not route.silent:
            p = ctx.scene.edit3d
            p.job_id = reply.job_id
            p.queue_position = reply.queue_position
            p.job_state = "QUEUED" if reply.queue_position > 0 else "RUNNING"

    def refused(ctx: Any, text: str) -> None:
        if not route.silent:
            ctx.scene.edit3d.job_state = "FAILED"
            ctx.scene.edit3d.job_message = text
        report_error(ctx, f"{message.type_name} refused: {text}")

    return request(context, message, accepted, refused, session=props.session_id or None)


def cancel_job(context: Any) -> None:
    props = context.scene.edit3d
    if not props.job_id:
        raise LookupError("no job to cancel")
    request(context, messages().JobCancel(job_id=props.job_id))


def _is_current(props: Any, job_id: str) -> bool:
    return bool(job_id) and job_id == props.job_id


def _adopt(props: Any, job_id: str, kind: str) -> None:
    """Show a job this client did not submit (e.g. session.prepare) when nothing else runs."""
    if job_id in LINK.jobs or _is_current(props, job_id):
        return
    if props.job_state in ACTIVE_JOB_STATES:
        return
    # our own submission's events can overtake its job.accepted reply: never adopt those
    if any(p.type_name.startswith("job.") for p in LINK.pending.values()):
        return
    props.job_id, props.job_kind = job_id, kind
    props.progress, props.step, props.total, props.eta_s = 0.0, 0, 0, -1.0
    props.job_message = ""


def _on_job_queued(context: Any, event: Any) -> None:
    props = context.scene.edit3d
    _adopt(props, event.job_id, event.kind)
    if _is_current(props, event.job_id):
        props.job_state = "QUEUED"
        props.queue_position = event.position


def _on_job_started(context: Any, event: Any) -> None:
    props = context.scene.edit3d
    _adopt(props, event.job_id, event.kind)
    if _is_current(props, event.job_id):
        props.job_state = "RUNNING"
        props.queue_position = 0


def _on_job_progress(context: Any, event: Any) -> None:
    props = context.scene.edit3d
    if not _is_current(props, event.job_id):
        return
    props.job_state = "RUNNING"
    props.step, props.total = event.step, event.total
    props.progress = min(1.0, event.step / event.total) if event.total else 0.0
    if event.loss is not None and np.isfinite(event.loss):
        props.loss = event.loss
    props.eta_s = -1.0 if event.eta_s is None else event.eta_s
    props.job_message = event.message


def _on_job_preview(context: Any, event: Any) -> None:
    props = context.scene.edit3d
    if props.live_preview and _is_current(props, event.job_id):
        props.preview_image = scene_io.image_to_datablock(PREVIEW_IMAGE, event.image[..., :3])


def _end_job(context: Any, job_id: str, state: str, message: str) -> JobRoute | None:
    route = LINK.jobs.pop(job_id, None)
    props = context.scene.edit3d
    if _is_current(props, job_id):
        props.job_state = state
        props.job_message = message
        if state == "FINISHED":
            props.progress = 1.0
        props.eta_s = -1.0
    return route


def _on_job_finished(context: Any, event: Any) -> None:
    route = _end_job(context, event.job_id, "FINISHED", "")
    props = context.scene.edit3d
    if (route is None or route.kind in LONG_JOBS) and props.session_id and is_ready():
        request(context, messages().SessionOpen(session_id=props.session_id), _on_session_summary)


def _on_job_failed(context: Any, event: Any) -> None:
    _end_job(context, event.job_id, "FAILED", event.reason)
    report_error(context, f"{event.kind} failed on the sidecar: {event.reason}")


def _on_job_cancelled(context: Any, event: Any) -> None:
    _end_job(context, event.job_id, "CANCELLED", "cancelled")
    add_report(context, "INFO", f"{event.kind} cancelled")
    props = context.scene.edit3d
    if props.session_id and is_ready():
        request(context, messages().SessionOpen(session_id=props.session_id), _on_session_summary)


def _on_render_result(context: Any, result: Any) -> None:
    LINK.render_results = [*LINK.render_results[-3:], result]
    if result.rgb is None:
        return
    rgb = np.asarray(result.rgb)
    image = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb
    context.scene.edit3d.preview_image = scene_io.image_to_datablock(PREVIEW_IMAGE, image)


def _on_masks_result(context: Any, result: Any) -> None:
    props = context.scene.edit3d
    props.mask_caption = result.caption
    if props.auto_caption:
        props.caption = result.caption
    props.mask_image = scene_io.image_to_datablock(MASK_IMAGE, result.soft_mask, non_color=True)
    if len(result.heatmaps):
        heat = np.max(np.asarray(result.heatmaps), axis=0)
        props.heatmap_image = scene_io.image_to_datablock(HEATMAP_IMAGE, heat, non_color=True)


def _on_export_result(context: Any, result: Any) -> None:
    LINK.export_results = [*LINK.export_results[-3:], result]
    route = LINK.jobs.get(result.job_id)
    if route is not None and not route.into_scene:
        add_report(context, "INFO", f"exported {result.path} on the sidecar")
        return
    if result.points is None:
        return
    coll = scene_io.ensure_collection(context.scene, EXPORT_COLLECTION)
    name = f"Edit3D {result.kind.replace('_', ' ')} {result.turn_id or 'head'}"
    if result.kind == "mesh" and result.faces is not None:
        scene_io.mesh_object(name, result.points, result.faces, result.colors, coll)
    else:
        scene_io.point_cloud_object(name, result.points, result.colors, coll)
    is_mesh = result.kind == "mesh" and result.faces is not None
    what = f"{len(result.faces)} triangles" if is_mesh else f"{len(result.points)} points"
    add_report(context, "INFO", f"{name}: {what}")
    push_undo(f"Edit3D: import {name}")


def push_undo(message: str) -> None:
    """Make objects a timer created one undo step (operators get theirs from bl_options)."""
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=message)


EVENT_HANDLERS: dict[str, Callable[[Any, Any], None]] = {
    "job.queued": _on_job_queued,
    "job.started": _on_job_started,
    "job.progress": _on_job_progress,
    "job.preview": _on_job_preview,
    "job.finished": _on_job_finished,
    "job.failed": _on_job_failed,
    "job.cancelled": _on_job_cancelled,
    "render.result": _on_render_result,
    "masks.result": _on_masks_result,
    "export.result": _on_export_result,
    "events.replayed": _on_events_replayed,
}


# --- live preview ------------------------------------------------------------------------


def _live_preview_tick(context: Any, now: float) -> None:
    """While idle with live preview on, re-render the active camera when it moved."""
    props = context.scene.edit3d
    camera = context.scene.camera
    if not props.live_preview or camera is None or not props.session_id:
        return
    if props.job_state in ACTIVE_JOB_STATES or now < LINK.next_live_at:
        return
    LINK.next_live_at = now + props.live_interval_s
    pose = tuple(round(v, 6) for row in camera.matrix_world for v in row)
    if pose == LINK.last_live_pose:
        return
    LINK.last_live_pose = pose
    render_camera(context, camera, silent=True)


def camera_message(context: Any, camera: Any) -> Any:
    pin = scene_io.pinhole_from_camera(camera, context.scene)
    return messages().Camera(
        c2w=pin.c2w, fx=pin.fx, fy=pin.fy, cx=pin.cx, cy=pin.cy,
        width=pin.width, height=pin.height, name=scene_io.dataset_view_name(camera),
    )  # fmt: skip


def render_camera(context: Any, camera: Any, *, silent: bool = False, turn_id: str | None = None):
    props = context.scene.edit3d
    msg = messages().JobRender(
        session_id=props.session_id, camera=camera_message(context, camera), turn_id=turn_id
    )
    return submit_job(context, msg, JobRoute("job.render", silent=silent))


# --- local sidecar -----------------------------------------------------------------------


def start_local_sidecar(
    python: str, workdir: str, *, device: str, tiny: bool, settings: LinkSettings | None = None
) -> Path:
    """Start `python -m sidecar.cli` detached (never waits); returns its connection file.

    The poll step connects once the sidecar has written that file (with `settings`).
    """
    if LINK.local_process is not None and LINK.local_process.poll() is None:
        raise RuntimeError("a local sidecar started from Blender is already running")
    if not python or not Path(python).is_file():
        raise FileNotFoundError(f"sidecar Python {python!r} does not exist")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "sidecar.cli", "--workdir", str(work), "--bind", "tcp://127.0.0.1:0"]
    cmd += ["--device", device] + (["--profile", "tiny"] if tiny else [])
    log = open(work / "sidecar-blender.log", "ab")  # noqa: SIM115 - the child owns it
    LINK.autoconnect_since = time.time() - 1.0  # file-system mtimes may be coarse
    LINK.local_process = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )  # fmt: skip
    log.close()
    if settings is not None:
        LINK.settings = settings
    LINK.autoconnect_file = work / "connection.json"
    ensure_timer()
    return LINK.autoconnect_file


def stop_local_sidecar() -> bool:
    """SIGTERM the sidecar this Blender started (its sessions stay on disk)."""
    proc = LINK.local_process
    if proc is None or proc.poll() is not None:
        LINK.local_process = None
        return False
    proc.terminate()
    return True


def _check_local_process(context: Any) -> None:
    proc = LINK.local_process
    if proc is not None and proc.poll() is not None:
        add_report(context, "INFO", f"local sidecar exited with code {proc.returncode}")
        LINK.local_process = None


def _autoconnect(context: Any) -> None:
    """Connect to the sidecar started from Blender as soon as its connection file is new."""
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
    settings = dataclasses.replace(LINK.settings, connection_file=str(path))
    try:
        connect(context, settings)
    except (PermissionError, ValueError, OSError, ImportError) as exc:
        report_error(context, f"Cannot connect to the local sidecar: {exc}")


def read_connection_file(path: str) -> dict[str, Any]:
    """The JSON a sidecar writes (endpoint, key, ...), for display."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- the timer ---------------------------------------------------------------------------


def _timer() -> float | None:
    try:
        interval = poll_once(bpy.context)
    except Exception as exc:  # the timer must survive any single bad tick
        print(f"Edit3D: poll failed: {exc!r}")
        interval = LINK.settings.poll_interval_s
    return interval


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=0.0, persistent=True)


def remove_timer() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)


def shutdown() -> None:
    """Unregister: stop the timer (bpy 4.5 hangs at exit otherwise) and close the socket."""
    remove_timer()
    LINK.wanted = False
    close_client()
    LINK.views = None
    LINK.jobs.clear()
