"""Replies and events applied to the panel's properties, and the requests they answer.

Handlers take (context, message) and only write properties, build images and objects, or
send follow-up requests; `route(client)` registers them on a protocol.Client, which calls
them from the poll step on Blender's main thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import bpy
import numpy as np

from . import edit_preview, scene_io, splat_io
from .connection import (
    LINK,
    JobRoute,
    SessionViews,
    add_report,
    is_ready,
    messages,
    report_error,
    request,
)
from .props import PRESETS

PREVIEW_IMAGE = "Edit3D Render"
BEFORE_IMAGE = "Edit3D Render (before)"
"""The same camera rendered from the head's parent turn: what the last edit changed."""
MASK_IMAGE = "Edit3D Mask"
HEATMAP_IMAGE = "Edit3D Heatmap"
EXPORT_COLLECTION = "Edit3D Exports"
LONG_JOBS = ("job.train_base", "job.run_turn", "job.resume_turn", "job.refine")
"""Jobs whose end changes the turn history (the session summary is refreshed after them)."""

ACTIVE_JOB_STATES = ("SUBMITTED", "QUEUED", "RUNNING")


# --- connection --------------------------------------------------------------------------


def on_connected(context: Any, reply: Any) -> None:
    """The handshake's facts in the panel; the open session is re-opened (resubscribed)."""
    status = context.window_manager.edit3d
    props = context.scene.edit3d
    status.server_version = reply.sidecar_version or ".".join(map(str, reply.server_version))
    status.device = reply.device + (f" ({reply.gpu_name})" if reply.gpu_name else "")
    status.gpu_memory_total_gb = (reply.gpu_memory_total or 0) / 2**30
    status.gpu_memory_free_gb = (reply.gpu_memory_free or 0) / 2**30
    status.capabilities = ", ".join(reply.capabilities)
    status.weights_missing = ", ".join(reply.weights_missing)
    edit_preview.take_method_defaults(props.editor, getattr(reply, "editor_defaults", None))
    fill_sessions(status, reply.sessions)
    if props.session_id:
        open_session(context, props.session_id, resync=True)


def fill_sessions(status: Any, sessions: Any) -> None:
    """Show the sidecar's sessions (newest first) so one can be opened."""
    status.sessions.clear()
    for info in sorted(sessions, key=lambda i: -i.created_ts):
        item = status.sessions.add()
        item.session_id, item.label = info.session_id, info.name
        item.turn_count, item.busy = info.turn_count, info.busy


def refresh_sessions(context: Any) -> None:
    def listed(ctx: Any, reply: Any) -> None:
        fill_sessions(ctx.window_manager.edit3d, reply.sessions)

    request(context, messages().SessionList(), listed)


def _on_heartbeat(context: Any, reply: Any) -> None:
    status = context.window_manager.edit3d
    if reply.gpu_memory_free is not None:
        status.gpu_memory_free_gb = reply.gpu_memory_free / 2**30
    if reply.busy and reply.running_job_id and status.job_id == reply.running_job_id:
        status.queue_position = 0


# --- sessions and turns ------------------------------------------------------------------


def open_session(context: Any, session_id: str, *, resync: bool = False) -> None:
    """Open (subscribe to) a session; refreshes turns and views.

    With resync (a session this conversation has not followed yet, e.g. after re-enabling
    the add-on) the client asks for the events missed since the last one applied; the
    server re-sends them, then answers events.replayed. A session the client already
    follows is resynced by the client itself after a reconnect.
    """
    request(context, messages().SessionOpen(session_id=session_id), on_session_summary)
    seq = context.scene.edit3d.event_seq
    client = LINK.client
    if resync and seq >= 0 and client is not None and client.last_seq(session_id) is None:
        client.follow(session_id, seq)
        client.resync(session_id)


def on_session_summary(context: Any, summary: Any) -> None:
    props = context.scene.edit3d
    props.session_id = summary.session_id
    context.window_manager.edit3d.session_label = summary.name
    context.window_manager.edit3d.session_backend = summary.backend or ""
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
        attach_session_jobs(context, summary.session_id)  # first opened here: find its jobs


def _on_events_replayed(context: Any, reply: Any) -> None:
    status = context.window_manager.edit3d
    props = context.scene.edit3d
    props.event_seq = reply.last_seq  # replayed events came first; a restarted sidecar resets
    if not reply.complete:
        known = {job.job_id: job for job in reply.jobs}
        if status.job_id in known:
            _apply_job_info(status, known[status.job_id])
        elif status.job_state in ACTIVE_JOB_STATES:
            status.job_state = "FAILED"
            status.job_message = "the sidecar restarted and lost this job; resume its turn"
            report_error(context, f"{status.job_kind}: {status.job_message}")
        request(context, messages().SessionOpen(session_id=reply.session_id), on_session_summary)


def _apply_job_info(status: Any, job: Any) -> None:
    state = {"queued": "QUEUED", "running": "RUNNING", "finished": "FINISHED",
             "failed": "FAILED", "cancelled": "CANCELLED"}.get(str(job.state))  # fmt: skip
    if state is not None:
        status.job_state = state
    status.step, status.total, status.progress = job.step, job.total, job.fraction
    status.job_message = job.message


def import_session_cameras(context: Any) -> list[Any]:
    """Create camera objects for the open session's dataset views (exact poses)."""
    if LINK.views is None:
        raise LookupError("no session is open: create or open one first")
    props = context.scene.edit3d
    return scene_io.import_cameras(
        context.scene, LINK.views.names, LINK.views.cameras(), props.camera_collection
    )


# --- jobs --------------------------------------------------------------------------------


def submit_job(context: Any, message: Any, route: JobRoute | None = None) -> Any:
    """Send a job request; the job becomes the panel's current job once accepted."""
    status = context.window_manager.edit3d
    route = route or JobRoute(message.type_name)
    props = context.scene.edit3d
    if not route.silent:
        status.job_kind = message.type_name
        status.job_state = "SUBMITTED"
        status.loss = 0.0  # a render or export has none: the last job's must not linger
        status.job_id = ""
        status.progress = 0.0
        status.step = status.total = 0
        status.phase = ""
        status.eta_s = -1.0
        status.job_message = ""

    def accepted(ctx: Any, reply: Any) -> None:
        status = ctx.window_manager.edit3d
        LINK.submitting = max(0, LINK.submitting - 1)
        LINK.jobs[reply.job_id] = route
        row = job_row(status, reply.job_id, message.type_name, session_id)
        if row.state == "queued":  # its job.started may have come first
            row.queue_position = reply.queue_position
        if not route.silent:
            status.job_id = reply.job_id
            status.queue_position = reply.queue_position
            status.job_state = "QUEUED" if reply.queue_position > 0 else "RUNNING"

    def refused(ctx: Any, text: str) -> None:
        LINK.submitting = max(0, LINK.submitting - 1)
        if not route.silent:
            ctx.window_manager.edit3d.job_state = "FAILED"
            ctx.window_manager.edit3d.job_message = text
        report_error(ctx, f"{message.type_name} refused: {text}")

    session_id = getattr(message, "session_id", "") or props.session_id
    call = request(context, message, accepted, refused, session=props.session_id or None)
    LINK.submitting += 1
    return call


def cancel_job(context: Any, job_id: str = "") -> None:
    """Cancel `job_id`, or the panel's current job."""
    job_id = job_id or context.window_manager.edit3d.job_id
    if not job_id:
        raise LookupError("no job to cancel")
    request(context, messages().JobCancel(job_id=job_id))


def cancel_queued_previews(context: Any) -> int:
    """A user's render goes first: live-preview renders still queued are cancelled."""
    status = context.window_manager.edit3d
    queued = [row.job_id for row in status.jobs if row.state == "queued"]
    stale = [job_id for job_id in queued if LINK.jobs.get(job_id, JobRoute("")).silent]
    for job_id in stale:
        cancel_job(context, job_id)
    return len(stale)


def _is_current(status: Any, job_id: str) -> bool:
    return bool(job_id) and job_id == status.job_id


def _adopt(status: Any, job_id: str, kind: str) -> None:
    """Show a job this client did not submit (e.g. session.prepare) when nothing else runs."""
    if job_id in LINK.jobs or _is_current(status, job_id):
        return
    if status.job_state in ACTIVE_JOB_STATES:
        return
    # our own submission's events can overtake its job.accepted reply: never adopt those
    if LINK.submitting:
        return
    status.job_id, status.job_kind = job_id, kind
    status.progress, status.step, status.total, status.eta_s = 0.0, 0, 0, -1.0
    status.loss, status.phase = 0.0, ""
    status.job_message = ""


TURN_JOBS = ("job.train_base", "job.run_turn", "job.resume_turn")
"""Jobs that make a turn another turn can be queued on (job.run_turn's after_job)."""
MAX_ENDED_ROWS = 5
"""Ended jobs kept in the job list (the newest)."""


def job_row(status: Any, job_id: str, kind: str = "", session_id: str = "") -> Any:
    """The job list's row of a job, added when new."""
    for row in status.jobs:
        if row.job_id == job_id:
            return row
    row = status.jobs.add()
    row.job_id, row.kind, row.session_id = job_id, kind, session_id
    row.state, row.eta_s = "queued", -1.0
    return row


def _row_ended(status: Any, job_id: str, state: str, message: str) -> None:
    row = job_row(status, job_id)
    row.state, row.message, row.eta_s = state, message, -1.0
    if state == "finished":
        row.progress = 1.0
    ended = [i for i, r in enumerate(status.jobs) if r.state not in ("queued", "running")]
    for index in reversed(ended[:-MAX_ENDED_ROWS]):
        status.jobs.remove(index)


def active_turn_job(status: Any, session_id: str) -> Any:
    """The newest queued or running turn job of the session (a new turn goes on top)."""
    rows = [r for r in status.jobs if r.session_id == session_id and r.kind in TURN_JOBS
            and r.state in ("queued", "running")]  # fmt: skip
    return rows[-1] if rows else None


def attach_session_jobs(context: Any, session_id: str) -> None:
    """List the session's jobs, wherever they were started; follow a running one."""

    def listed(ctx: Any, reply: Any) -> None:
        status = ctx.window_manager.edit3d
        for job in reply.jobs:
            if job.state not in ("queued", "running"):
                continue
            row = job_row(status, job.job_id, job.kind, job.session_id)
            row.state, row.step, row.total = job.state, job.step, job.total
            row.progress = job.fraction
            row.queue_position, row.message = job.queue_position or 0, job.message
            _adopt(status, job.job_id, job.kind)
            if _is_current(status, job.job_id):
                _apply_job_info(status, job)

    request(context, messages().JobStatus(session_id=session_id), listed)


def _on_job_queued(context: Any, event: Any) -> None:
    status = context.window_manager.edit3d
    row = job_row(status, event.job_id, event.kind, context.scene.edit3d.session_id)
    row.state, row.queue_position = "queued", event.position
    _adopt(status, event.job_id, event.kind)
    if _is_current(status, event.job_id):
        status.job_state = "QUEUED"
        status.queue_position = event.position


def _on_job_started(context: Any, event: Any) -> None:
    status = context.window_manager.edit3d
    row = job_row(status, event.job_id, event.kind, context.scene.edit3d.session_id)
    row.state, row.queue_position = "running", 0
    _adopt(status, event.job_id, event.kind)
    if _is_current(status, event.job_id):
        status.job_state = "RUNNING"
        status.queue_position = 0


def _on_job_progress(context: Any, event: Any) -> None:
    status = context.window_manager.edit3d
    row = job_row(status, event.job_id)
    _apply_progress(row, event)
    row.state, row.message = "running", event.message
    if not _is_current(status, event.job_id):
        return
    _apply_progress(status, event)
    status.job_state, status.job_message = "RUNNING", event.message
    if event.loss is None:
        status.loss = 0.0  # a phase without training: an earlier loss must not linger
    elif np.isfinite(event.loss):
        status.loss = event.loss


def _apply_progress(target: Any, event: Any) -> None:
    """The job's one bar: its share of the whole job (never restarting between phases)."""
    target.step, target.total, target.phase = event.step, event.total, event.phase
    target.progress = event.fraction
    target.eta_s = -1.0 if event.eta_s is None else event.eta_s


def _on_job_preview(context: Any, event: Any) -> None:
    props = context.scene.edit3d
    if props.live_preview and _is_current(context.window_manager.edit3d, event.job_id):
        props.preview_image = scene_io.image_to_datablock(PREVIEW_IMAGE, event.image[..., :3])


def _end_job(context: Any, job_id: str, state: str, message: str) -> JobRoute | None:
    status = context.window_manager.edit3d
    route = LINK.jobs.pop(job_id, None)
    _row_ended(status, job_id, state.lower(), message)
    if _is_current(status, job_id):
        status.job_state = state
        status.job_message = message
        if state == "FINISHED":
            status.progress = 1.0
        status.eta_s = -1.0
    return route


def _on_job_finished(context: Any, event: Any) -> None:
    route = _end_job(context, event.job_id, "FINISHED", "")
    props = context.scene.edit3d
    if (route is None or route.kind in LONG_JOBS) and props.session_id and is_ready():
        request(context, messages().SessionOpen(session_id=props.session_id), on_session_summary)


def _on_job_failed(context: Any, event: Any) -> None:
    _end_job(context, event.job_id, "FAILED", event.reason)
    report_error(context, f"{event.kind} failed on the sidecar: {event.reason}")


def _on_job_cancelled(context: Any, event: Any) -> None:
    _end_job(context, event.job_id, "CANCELLED", "cancelled")
    add_report(context, "INFO", f"{event.kind} cancelled")
    props = context.scene.edit3d
    if props.session_id and is_ready():
        request(context, messages().SessionOpen(session_id=props.session_id), on_session_summary)


def _on_render_result(context: Any, result: Any) -> None:
    LINK.render_results = [*LINK.render_results[-3:], result]
    if result.rgb is None:
        return
    rgb = np.asarray(result.rgb)
    image = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb
    route = LINK.jobs.get(result.job_id)
    name = route.image if route is not None and route.image else PREVIEW_IMAGE
    datablock = scene_io.image_to_datablock(name, image)
    props = context.scene.edit3d
    if name == BEFORE_IMAGE:
        props.before_image = datablock
    else:
        props.preview_image = datablock


def _on_masks_result(context: Any, result: Any) -> None:
    status = context.window_manager.edit3d
    props = context.scene.edit3d
    status.mask_caption = result.caption
    if props.auto_caption:
        props.caption = result.caption
    props.mask_image = scene_io.image_to_datablock(MASK_IMAGE, result.soft_mask, non_color=True)
    if len(result.heatmaps):
        heat = np.max(np.asarray(result.heatmaps), axis=0)
        props.heatmap_image = scene_io.image_to_datablock(HEATMAP_IMAGE, heat, non_color=True)


def _on_export_result(context: Any, result: Any) -> None:
    LINK.export_results = [*LINK.export_results[-3:], result]
    route = LINK.jobs.get(result.job_id)
    if result.kind == "nerfstudio_run":
        add_report(context, "INFO", f"saved a nerfstudio run on the sidecar: {result.path} "
                   "(open it there with ns-viewer --load-config)")  # fmt: skip
        return
    if route is not None and not route.into_scene:
        add_report(context, "INFO", f"exported {result.path} on the sidecar; Download fetches it")
        return
    if result.points is None:
        return
    coll = scene_io.ensure_collection(context.scene, EXPORT_COLLECTION)
    name = f"Edit3D {result.kind.replace('_', ' ')} {result.turn_id or 'head'}"
    if result.kind == "splats":
        splats = splat_io.Splats(means=result.points, log_scales=result.log_scales,
                                 rotations=result.rotations, sh_dc=result.sh_dc,
                                 opacity_logits=result.opacity_logits)  # fmt: skip
        splat_io.splat_object(name, splats, coll)
        add_report(context, "INFO", f"{name}: {len(result.points)} splats")
        push_undo(f"Edit3D: import {name}")
        return
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


HANDLERS: dict[str, Callable[[Any, Any], None]] = {
    "heartbeat.reply": _on_heartbeat,
    "job.queued": _on_job_queued,
    "job.started": _on_job_started,
    "job.progress": _on_job_progress,
    "job.preview": _on_job_preview,
    "job.finished": _on_job_finished,
    "job.failed": _on_job_failed,
    "job.cancelled": _on_job_cancelled,
    "render.result": _on_render_result,
    "masks.result": _on_masks_result,
    "edit_preview.result": edit_preview.on_edit_preview_result,
    "export.result": _on_export_result,
    "events.replayed": _on_events_replayed,
}


# --- live preview ------------------------------------------------------------------------


def route(client: Any) -> None:
    """Register every handler on the client (it calls them from the poll step)."""
    for type_name, handler in HANDLERS.items():
        client.on_event(type_name, lambda message, fn=handler: fn(bpy.context, message))


def live_preview_tick(context: Any) -> None:
    """While idle with live preview on, re-render the active camera when it moved."""
    status = context.window_manager.edit3d
    now = time.monotonic()
    props = context.scene.edit3d
    camera = context.scene.camera
    if not props.live_preview or camera is None or not props.session_id:
        return
    if now < LINK.next_live_at or status.job_state in ACTIVE_JOB_STATES:
        return
    if any(row.state in ("queued", "running") for row in status.jobs):
        return  # a preview would wait behind the job and show the user nothing new
    LINK.next_live_at = now + props.live_interval_s
    pose = tuple(round(v, 6) for row in camera.matrix_world for v in row)
    if pose == LINK.last_live_pose:
        return
    LINK.last_live_pose = pose
    render_camera(context, camera, silent=True)


def render_camera(
    context: Any, camera: Any, *, silent: bool = False, turn_id: str | None = None,
    image: str = PREVIEW_IMAGE,
) -> Any:  # fmt: skip
    """Render `camera` from `turn_id` (None: the head) into the image named `image`."""
    props = context.scene.edit3d
    msg = messages().JobRender(session_id=props.session_id, turn_id=turn_id,
                               camera=scene_io.camera_from_object(camera, context.scene))
    return submit_job(context, msg, JobRoute("job.render", silent=silent, image=image))


def render_before_after(context: Any, camera: Any) -> bool:
    """Render the head turn, and its parent turn into the "before" image when it has one.
    Returns whether a "before" render was asked for."""
    props = context.scene.edit3d
    head = next((t for t in props.turns if t.turn_id == props.head), None)
    parent = head.parent if head is not None and props.render_before else ""
    if parent:
        render_camera(context, camera, turn_id=parent, image=BEFORE_IMAGE, silent=True)
    render_camera(context, camera)
    return bool(parent)
