"""The one link to the sidecar: a `protocol.Client` conversation pumped by one timer.

The client owns the conversation (requests and their replies, timeouts, heartbeats, a lost
sidecar, reconnecting, resyncing events); this module only opens it, forwards its state to
the panel, and calls `pump()` from `poll_once(context)`, the whole poll step as a plain
function: the timer calls it, and so do tests (timers never fire in the bpy module).
Replies and events are applied to properties by `events.py`. Everything here runs on
Blender's main thread and nothing waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from . import scene_io

CLIENT_NAME = "blender-addon 0.1.0"
MAX_REPORTS = 20
IDLE_INTERVAL_S = 0.5
HANDSHAKE_TIMEOUT_S = 2.0
"""A sidecar answers a handshake in milliseconds: longer means it is not there (or the key
is wrong), and a stale connection file should not keep the user waiting."""

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
    """Heartbeat period while connected and otherwise silent."""
    lost_after_s: float = 6.0
    """Silence after which the sidecar is shown as lost and reconnected."""
    poll_interval_s: float = 0.1
    """Timer period while connected."""


@dataclass
class SessionViews:
    """The open session's dataset cameras (arrays are too big for scene properties)."""

    names: list[str]
    c2w: np.ndarray
    intrinsics: np.ndarray

    def cameras(self) -> list[Any]:
        """The views as protocol Camera records."""
        out = []
        for name, c2w, k in zip(self.names, self.c2w, self.intrinsics, strict=True):
            fx, fy, cx, cy, w, h = (float(v) for v in k)
            out.append(scene_io.make_camera(c2w=np.ascontiguousarray(c2w), fx=fx, fy=fy, cx=cx,
                                            cy=cy, width=int(w), height=int(h), name=name))
        return out


@dataclass
class JobRoute:
    """What to do with a job's results when they arrive."""

    kind: str
    silent: bool = False
    """Live-preview renders do not take over the panel's job display."""
    into_scene: bool = True
    """Exports: build Blender objects from the returned arrays."""
    image: str = ""
    """Renders: the image datablock the result goes into (empty: the preview image)."""
    editor_values: dict[str, Any] | None = None
    """Edit previews: the Editor box as sent (Use These Settings restores it)."""


@dataclass
class SidecarLink:
    """Runtime state of the add-on (module state: never saved into a .blend file)."""

    client: Any = None
    """The protocol.Client of the current conversation (None when disconnected)."""
    settings: LinkSettings = field(default_factory=LinkSettings)
    jobs: dict[str, JobRoute] = field(default_factory=dict)
    """Jobs this Blender submitted or follows, by job id."""
    submitting: int = 0
    """Job requests sent and not yet accepted (their events may overtake the reply)."""
    views: SessionViews | None = None
    last_live_pose: tuple[float, ...] | None = None
    next_live_at: float = 0.0
    local_process: Any = None
    """The sidecar subprocess this Blender started (local_sidecar.py)."""
    local_connection_file: Path | None = None
    """The connection file that sidecar writes."""
    autoconnect_file: Path | None = None
    """Connection file of a sidecar this Blender started: connect once it is written."""
    autoconnect_since: float = 0.0
    """Wall-clock start of that sidecar (an older file is a previous run's)."""
    uploads: Any = None
    """The dataset upload in progress (upload.py)."""
    download: Any = None
    """The export download in progress (download.py)."""
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
    status = context.window_manager.edit3d
    item = status.reports.add()
    item.level = level
    item.message = message[:1024]
    while len(status.reports) > MAX_REPORTS:
        status.reports.remove(0)
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


def endpoint_label(settings: LinkSettings) -> str:
    return settings.connection_file or settings.endpoint


def connect(context: Any, settings: LinkSettings) -> None:
    """Open the conversation; the handshake is answered on a later poll.

    Raises PermissionError when the sidecar is on another machine and Blender's online
    access is off, ValueError/OSError for a bad configuration (connection file, key).
    Never waits on the network.
    """
    from . import connection_files, events

    info = connection_files.resolve(settings)
    if not bpy.app.online_access and not connection_files.is_local(info):
        raise PermissionError(
            f"Online access is disabled and {info.endpoint} is on another machine: enable "
            "Preferences > System > Network > Allow Online Access to talk to it"
        )
    close_client()
    proto = protocol_module()
    client = proto.Client(
        Path(settings.connection_file) if settings.connection_file else info,
        client_name=CLIENT_NAME,
    )
    LINK.settings, LINK.client = settings, client
    client.on_state(lambda state, detail: _on_state(client, state, detail))
    events.route(client)
    client.start(proto.KeepAlive(
        heartbeat_interval_s=settings.heartbeat_interval_s,
        lost_after_s=settings.lost_after_s,
        handshake_timeout_s=min(settings.request_timeout_s, HANDSHAKE_TIMEOUT_S),
    ))  # fmt: skip
    ensure_timer()


def disconnect(context: Any, reason: str = "") -> None:
    """Close the link on purpose (jobs on the sidecar keep running)."""
    status = context.window_manager.edit3d
    LINK.autoconnect_file = None
    close_client()
    status.connection_state = "DISCONNECTED"
    status.connection_message = reason


def close_client() -> None:
    client, LINK.client = LINK.client, None  # its state changes no longer reach the panel
    LINK.submitting = 0
    if client is not None:
        try:
            client.stop()
        except Exception as exc:  # a half-open socket must not keep Blender from closing it
            print(f"Edit3D: closing the client failed: {exc}")


def _on_state(client: Any, state: str, detail: str) -> None:
    """The conversation's state, shown in the panel; errors the user must see, reported."""
    status = bpy.context.window_manager.edit3d
    if client is not LINK.client:
        return
    context = bpy.context
    before = status.connection_state
    status.connection_state = state.upper()
    status.connection_message = detail
    if state == "connected":
        LINK.autoconnect_file = None  # connected: a later disconnect must stay disconnected
        from . import events

        events.on_connected(context, client.server)
    elif state == "lost" and before != "LOST":
        report_error(context, f"Lost the sidecar ({detail}); reconnecting")
    elif state == "disconnected":
        LINK.client = None
        _report_refused(context, before, detail)


def _report_refused(context: Any, before: str, detail: str) -> None:
    where = endpoint_label(LINK.settings)
    if "speaks protocol" in detail:
        report_error(context, f"The sidecar at {where}: {detail}")
    elif before == "CONNECTING":
        report_error(
            context, f"No answer from the sidecar at {where}: {detail}. Is it running, and "
            "are the endpoint and key (connection file) right?",
        )  # fmt: skip


def is_ready() -> bool:
    """Connected and handshaken: requests other than the handshake may be sent."""
    return LINK.client is not None and LINK.client.state == "connected"


# --- requests ----------------------------------------------------------------------------


def error_text(error: Exception) -> str:
    code = getattr(error, "code", None)
    return f"{error.message} [{code}]" if code and hasattr(error, "message") else str(error)


def request(
    context: Any,
    message: Any,
    on_reply: ReplyHandler | None = None,
    on_error: ErrorHandler | None = None,
    *,
    timeout_s: float | None = None,
    session: str | None = None,
) -> Any:
    """Send a request now; on_reply(context, reply) or on_error(context, text) runs later
    (from the poll step). Raises ConnectionError when not connected (nothing sent)."""
    if LINK.client is None:
        raise ConnectionError("not connected to a sidecar")

    def replied(reply: Any) -> None:
        if on_reply is not None:
            on_reply(bpy.context, reply)

    def failed(error: Exception) -> None:
        text = error_text(error)
        if on_error is not None:
            on_error(bpy.context, text)
        else:
            report_error(bpy.context, f"{message.type_name} refused: {text}")

    return LINK.client.call(
        message, on_reply=replied, on_error=failed, session=session,
        timeout_s=LINK.settings.request_timeout_s if timeout_s is None else timeout_s,
    )  # fmt: skip


# --- the poll step -----------------------------------------------------------------------


def poll_once(context: Any) -> float | None:
    """One tick: pump the conversation (non-blocking), then the live preview and the local
    sidecar. Returns the delay until the next tick, or None when there is nothing to watch
    (the timer then stops)."""
    from . import events, local_sidecar

    client = LINK.client
    if client is not None:
        client.pump()
    if LINK.client is not None and LINK.client.state == "connected":
        events.live_preview_tick(context)
    local_sidecar.tick(context)
    if LINK.client is not None:
        return LINK.settings.poll_interval_s
    return None if LINK.local_process is None else IDLE_INTERVAL_S


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
    close_client()
    LINK.views = None
    LINK.jobs.clear()
