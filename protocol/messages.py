"""The message set: one frozen, validated dataclass per wire type (see SPEC.md).

Adding a field: give it a default so older peers (which omit it) still validate; receivers
ignore fields they do not know. Adding a type: decorate a `Message` subclass with
`@message("family.name")`. Removing or retyping a field is a major-version change.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from .errors import ErrorCode, ProtocolError
from .schema import Record, Scalars, param, record, record_fields

ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
"""Session, turn, job and upload ids: safe as file names."""
MSG_ID = r"[0-9a-f]{32}"
DIGEST = r"[0-9a-f]{64}"
TYPE_NAME = r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*"
PRESET = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
BACKEND = r"[a-z][a-z0-9_-]{0,63}"
MAX_QUERIES = 16
MAX_VIEWS = 100_000
MAX_INT32 = 2**31 - 1
MAX_EDITORS = 64
GiB = 1 << 30

MESSAGE_TYPES: dict[str, type[Message]] = {}
"""Every message class by its wire type name."""


class Message(Record):
    """A record that travels as the body of one wire message."""

    type_name: ClassVar[str]
    """Wire type name, e.g. "job.render"."""
    direction: ClassVar[Literal["request", "reply", "event"]]
    """Who sends it: client requests, server replies, server-pushed events."""
    idempotent: ClassVar[bool] = False
    """Safe to send twice (the client may retry it)."""


def message(
    type_name: str, direction: Literal["request", "reply", "event"], *, idempotent: bool = False
) -> Any:
    """Register a `Message` subclass under its wire type name (and make it a record)."""

    def wrap(cls: type[Message]) -> type[Message]:
        if type_name in MESSAGE_TYPES:
            raise ValueError(f"message type {type_name!r} registered twice")
        cls.type_name = type_name
        cls.direction = direction
        cls.idempotent = idempotent
        MESSAGE_TYPES[type_name] = record(cls)
        return cls

    return wrap


def _fail(where: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_FIELD, f"{where}: {message}")


# --------------------------------------------------------------------------- header


@record
class Header(Record):
    """The header frame of every message."""

    v: tuple[int, int] = param(ge=0, le=65535)
    """Protocol version (major, minor) of the sender."""
    type: str = param(pattern=TYPE_NAME, max_len=64)
    """Wire type name of the body."""
    msg_id: str = param(pattern=MSG_ID)
    """uuid4 hex; unique per message (replay protection)."""
    parent_id: str | None = param(None, pattern=MSG_ID)
    """For replies and job events: the msg_id of the request they answer."""
    ts: float = param(ge=0.0)
    """Sender's clock, unix seconds."""
    session: str | None = param(None, pattern=ID)
    """Session the message concerns (always set on events)."""
    seq: int | None = param(None, ge=1)
    """Per-session event sequence number (events only), starting at 1."""
    sender: str | None = param(None, pattern=ID)
    """Client messages: the sender's ZeroMQ routing id (the server checks it is the peer's)."""
    sizes: tuple[int, ...] = param((), ge=0, max_items=64)
    """Byte length of the body frame and of each buffer frame, in order."""
    digests: tuple[str, ...] = param((), pattern=DIGEST, max_items=64)
    """SHA-256 (hex) of the body, then of each buffer; the body's alone where the transport
    authenticates every byte (CURVE, a private ipc:// socket)."""


# --------------------------------------------------------------------------- nested records


@record
class Camera(Record):
    """A pinhole camera in the dataset's world frame (OpenGL: looks down -Z, +Y up)."""

    c2w: np.ndarray = param(dtypes=("<f8",), shape=(4, 4))
    """Camera-to-world 4x4, float64."""
    fx: float = param(ge=1e-3, le=1e7)
    """Focal length in pixels (x)."""
    fy: float = param(ge=1e-3, le=1e7)
    """Focal length in pixels (y)."""
    cx: float = param(ge=-1e6, le=1e6)
    """Principal point x in pixels."""
    cy: float = param(ge=-1e6, le=1e6)
    """Principal point y in pixels."""
    width: int = param(ge=1, le=8192)
    """Image width in pixels."""
    height: int = param(ge=1, le=8192)
    """Image height in pixels."""
    name: str | None = param(None, max_len=1024)
    """Dataset view (image file name) this camera came from, if any."""

    def check(self) -> None:
        if not np.allclose(self.c2w[3], (0.0, 0.0, 0.0, 1.0)):
            raise _fail("Camera.c2w", f"bottom row must be [0, 0, 0, 1], got {self.c2w[3]}")


@record
class EditorSettings(Record):
    """InstructPix2Pix settings of a turn. Only the fields that are set travel to the method;
    a field left None keeps the method's default (edit3d's `EditorSettings`)."""

    guidance_scale: float | None = param(None, ge=0.0, le=100.0)
    """Text guidance weight."""
    image_guidance_scale: float | None = param(None, ge=0.0, le=100.0)
    """Image guidance weight."""
    diffusion_steps: int | None = param(None, ge=1, le=1000)
    """DDIM denoising steps per edit."""
    lower_bound: float | None = param(None, ge=0.0, le=1.0)
    """Smallest noise level, as a fraction of the diffusion timesteps."""
    upper_bound: float | None = param(None, ge=0.0, le=1.0)
    """Largest noise level, as a fraction of the diffusion timesteps."""
    resolution: int | None = param(None, ge=8, le=4096)
    """Long side in pixels the diffusion runs at."""

    def check(self) -> None:
        low, high = self.lower_bound, self.upper_bound
        if low is not None and high is not None and low > high:
            raise _fail("EditorSettings", f"lower_bound {low} must be <= upper_bound {high}")

    def given(self) -> dict[str, Any]:
        """The fields that were set."""
        values = {name: getattr(self, name) for name, _, _ in record_fields(type(self))}
        return {name: value for name, value in values.items() if value is not None}


@record
class EditorStatus(Record):
    """One actor of a session's editor pool, as job progress reports it."""

    editor: str = param(max_len=100)
    """Actor name ("editor-0", ...)."""
    device: str = param(max_len=300)
    """Where it edits, e.g. "cuda (NVIDIA H200) on node-3" or "cpu on node-1"."""
    edits: int = param(0, ge=0, le=MAX_INT32)
    """Edits it finished since the pool started (pools stay warm across a session's turns)."""
    s_per_edit: float | None = param(None, ge=0.0)
    """Mean seconds per edit (None before its first)."""
    alive: bool = True
    """False once the actor died (its edit was queued again elsewhere)."""


@record
class SessionInfo(Record):
    """One line of a session list."""

    session_id: str = param(pattern=ID)
    """Session id."""
    name: str = param(max_len=200)
    """Human name."""
    created_ts: float = param(ge=0.0)
    """Creation time, unix seconds."""
    head: str | None = param(None, pattern=ID)
    """Checked-out turn id (None before the base is trained)."""
    turn_count: int = param(0, ge=0, le=MAX_INT32)
    """Number of turns (base included)."""
    busy: bool = False
    """A job of this session is queued or running."""


@record
class TurnInfo(Record):
    """One node of a session's turn history."""

    turn_id: str = param(pattern=ID)
    """Turn id."""
    parent: str | None = param(None, pattern=ID)
    """Parent turn (None for the base)."""
    kind: Literal["base", "edit", "refine"]
    """What the turn did."""
    status: Literal["running", "interrupted", "finished", "failed", "cancelled"]
    """Turn state; interrupted turns can be resumed or discarded."""
    instruction: str | None = param(None, max_len=2000)
    """Edit instruction (edit turns)."""
    created_ts: float = param(ge=0.0)
    """Start time, unix seconds."""
    finished_ts: float | None = param(None, ge=0.0)
    """End time, unix seconds."""
    step: int = param(0, ge=0, le=MAX_INT32)
    """Iterations done."""
    total_steps: int = param(0, ge=0, le=MAX_INT32)
    """Iterations planned."""
    edit_queries: tuple[str, ...] = param((), max_len=200, max_items=MAX_QUERIES)
    """Regions the turn edited (edit turns)."""
    keep_queries: tuple[str, ...] = param((), max_len=200, max_items=MAX_QUERIES)
    """Regions the turn kept (inverse mode)."""
    params: Scalars = param(default_factory=dict)
    """The turn's scalar parameters (mode, edit_rate, seed, caption, ...)."""


JobState = Literal["queued", "running", "finished", "failed", "cancelled"]


@record
class JobInfo(Record):
    """State of one job."""

    job_id: str = param(pattern=ID)
    """Job id."""
    session_id: str = param(pattern=ID)
    """Session the job belongs to."""
    kind: str = param(pattern=TYPE_NAME, max_len=64)
    """Request type that created it, e.g. "job.run_turn"."""
    state: JobState
    """Job state."""
    queue_position: int | None = param(None, ge=0, le=MAX_INT32)
    """0 = running, n = n jobs ahead; None once done."""
    step: int = param(0, ge=0, le=MAX_INT32)
    """Progress step."""
    total: int = param(0, ge=0, le=MAX_INT32)
    """Progress total (0 = unknown)."""
    fraction: float = param(0.0, ge=0.0, le=1.0)
    """Share of the whole job done, across its phases (the one bar to draw)."""
    submitted_ts: float = param(ge=0.0)
    """Submission time, unix seconds."""
    last_progress_ts: float | None = param(None, ge=0.0)
    """Time of the last progress report, unix seconds."""
    message: str = param("", max_len=4096)
    """Last progress message or failure reason."""


# --------------------------------------------------------------------------- handshake, health


@message("handshake", "request", idempotent=True)
class Handshake(Message):
    """First request of a client: versions must agree on the major number."""

    client_version: tuple[int, int] = param(ge=0, le=65535)
    """Client's protocol version (major, minor)."""
    client_name: str = param("", max_len=200)
    """Free text, e.g. "blender-addon 0.1.0"."""


@message("handshake.reply", "reply")
class HandshakeReply(Message):
    """The server's identity and resources."""

    server_version: tuple[int, int] = param(ge=0, le=65535)
    """Server's protocol version (major, minor)."""
    server_id: str = param(pattern=ID)
    """Random id of this server process; a change means the server restarted."""
    sidecar_version: str = param("", max_len=64)
    """Sidecar software version."""
    device: str = param(max_len=200)
    """Compute device, e.g. "cuda:0" or "cpu"."""
    gpu_name: str | None = param(None, max_len=200)
    """GPU model name."""
    gpu_memory_total: int | None = param(None, ge=0)
    """Total GPU memory in bytes."""
    gpu_memory_free: int | None = param(None, ge=0)
    """Free GPU memory in bytes."""
    capabilities: tuple[str, ...] = param((), max_len=64, max_items=256)
    """Feature names, e.g. "ip2p", "adss", "refine", "export.mesh", "upload"."""
    sessions: tuple[SessionInfo, ...] = param((), max_items=10_000)
    """The newest sessions, newest first (at most one `session.list` page; see
    `session_count`)."""
    session_count: int | None = param(None, ge=0, le=MAX_INT32)
    """How many sessions exist; more than `sessions` holds means: page with `session.list`
    (None from servers that send them all)."""
    buffer_integrity: Literal["digest", "transport"] = "digest"
    """How frames after the header are authenticated on this connection: "digest" = SHA-256
    of each in the signed header (tcp without CURVE); "transport" = CURVE or a private
    ipc:// socket already authenticates every byte, so no digests are sent or required."""
    weights_present: tuple[str, ...] = param((), max_len=64, max_items=256)
    """Registered model names whose real weights the server has (e.g. "sam-vit-h")."""
    weights_missing: tuple[str, ...] = param((), max_len=64, max_items=256)
    """Registered model names without real weights on the server: jobs needing them fail
    until `edit3d models fetch NAME` is run there (the tiny profile needs none)."""
    editor_defaults: EditorSettings | None = None
    """The editor settings a turn uses where its request leaves them unset (the method's
    defaults; a field left None here has no fixed default). None from older servers."""


@message("heartbeat", "request", idempotent=True)
class Heartbeat(Message):
    """Liveness probe (answered even while a job runs)."""


@message("heartbeat.reply", "reply")
class HeartbeatReply(Message):
    """Liveness, and separately the progress clock of the running job."""

    server_time: float = param(ge=0.0)
    """Server clock, unix seconds."""
    busy: bool = False
    """A job is running."""
    running_job_id: str | None = param(None, pattern=ID)
    """The running job."""
    last_progress_ts: float | None = param(None, ge=0.0)
    """When the running job last reported progress (a stuck job shows an old value)."""
    queue_length: int = param(0, ge=0, le=MAX_INT32)
    """Jobs waiting."""
    gpu_memory_free: int | None = param(None, ge=0)
    """Free memory of the job GPU in bytes, as last read by the worker (at its start, every
    few seconds while a job reports progress, after each job); None on a CPU."""


@message("error", "reply")
class ErrorReply(Message):
    """A request failed; `code` is stable (ErrorCode values), `message` is for humans."""

    code: str = param(pattern=r"[a-z_]{1,64}", max_len=64)
    """Stable error code."""
    message: str = param(max_len=4096)
    """Human-readable explanation."""
    detail: str = param("", max_len=65536)
    """Extra context (e.g. a traceback for internal errors)."""


@message("ok", "reply")
class Ok(Message):
    """A request without a payload succeeded."""

    detail: str = param("", max_len=4096)
    """Optional note."""


# --------------------------------------------------------------------------- sessions


@message("session.create", "request")
class SessionCreate(Message):
    """Create a session from a dataset or a nerfstudio run on the sidecar machine.

    With neither, the session starts empty and is filled by uploads.
    """

    name: str = param(max_len=200)
    """Human name."""
    dataset_path: str | None = param(None, path="absolute_or_relative")
    """Dataset folder on the sidecar machine (transforms.json or COLMAP)."""
    nerfstudio_run: str | None = param(None, path="absolute_or_relative")
    """A nerfstudio run's config.yml on the sidecar machine (its model becomes the base)."""
    preset: str | None = param(None, pattern=PRESET)
    """Field preset name, e.g. "tiny" (None = edit3d's default preset; sent as an absent
    field, which a 2.1 sidecar reads as its own default)."""
    backend: str | None = param(None, pattern=BACKEND)
    """Field backend by its edit3d registry name, e.g. "nerfacto" (None = edit3d's default;
    a nerfstudio run's model decides its own)."""
    editors: int | None = param(None, ge=0, le=MAX_EDITORS)
    """Edit this session's turns on an editor pool of this many Ray actors on the sidecar's
    Ray instance or cluster (0 = one per GPU; None = in the sidecar's worker)."""
    staleness: int | None = param(None, ge=0, le=MAX_EDITORS)
    """Edit rounds in flight while the field trains (None = one per editor; 0 = wait for
    every edit). Only with `editors`."""

    def check(self) -> None:
        if self.staleness is not None and self.editors is None:
            raise _fail("SessionCreate", "staleness applies to an editor pool: set editors")
        if self.dataset_path is not None and self.nerfstudio_run is not None:
            raise _fail("SessionCreate", "give dataset_path or nerfstudio_run, not both")
        if self.backend is not None and self.nerfstudio_run is not None:
            raise _fail("SessionCreate.backend", "a nerfstudio run's model decides the backend; "
                        "leave backend unset")


@message("session.list", "request", idempotent=True)
class SessionList(Message):
    """List sessions, newest first, one page at a time."""

    after: str | None = param(None, pattern=ID)
    """Cursor: the last session id of the previous page (None = start with the newest)."""
    limit: int = param(1000, ge=1, le=10_000)
    """Most sessions in the reply."""


@message("session.list.reply", "reply")
class SessionListReply(Message):
    """One page of sessions."""

    sessions: tuple[SessionInfo, ...] = param((), max_items=10_000)
    """Sessions, newest first."""
    next_after: str | None = param(None, pattern=ID)
    """Pass as `after` to get the next page; None = this was the last page."""
    total: int | None = param(None, ge=0, le=MAX_INT32)
    """How many sessions exist."""


@message("session.open", "request", idempotent=True)
class SessionOpen(Message):
    """Fetch a session's summary (and subscribe to its events)."""

    session_id: str = param(pattern=ID)
    """Session id."""


@message("session.delete", "request")
class SessionDelete(Message):
    """Delete a session and its files (refused while one of its jobs runs)."""

    session_id: str = param(pattern=ID)
    """Session id."""


@message("session.summary", "reply")
class SessionSummary(Message):
    """A session: turn history, head and dataset views (poses as arrays)."""

    session_id: str = param(pattern=ID)
    """Session id."""
    name: str = param(max_len=200)
    """Human name."""
    preset: str = param(pattern=PRESET)
    """Field preset (the sidecar always names it, its default resolved)."""
    backend: str | None = param(None, pattern=BACKEND)
    """Field backend of the session's turns (None: edit3d's default, named once the session
    has its workspace)."""
    head: str | None = param(None, pattern=ID)
    """Checked-out turn."""
    turns: tuple[TurnInfo, ...] = param((), max_items=10_000)
    """All turns, in creation order."""
    view_names: tuple[str, ...] = param((), max_len=1024, max_items=MAX_VIEWS)
    """Dataset views (image file names), same order as the arrays."""
    view_c2w: np.ndarray = param(
        default_factory=lambda: np.zeros((0, 4, 4)), dtypes=("<f8",), shape=(None, 4, 4)
    )
    """[N, 4, 4] float64 camera-to-world, world frame."""
    view_intrinsics: np.ndarray = param(
        default_factory=lambda: np.zeros((0, 6)), dtypes=("<f8",), shape=(None, 6)
    )
    """[N, 6] float64: fx, fy, cx, cy, width, height."""
    last_seq: int = param(0, ge=0)
    """Sequence number of the session's latest event."""

    def check(self) -> None:
        n = len(self.view_names)
        if self.view_c2w.shape[0] != n or self.view_intrinsics.shape[0] != n:
            raise _fail("SessionSummary", f"{n} view names but arrays of length "
                        f"{self.view_c2w.shape[0]} and {self.view_intrinsics.shape[0]}")


@message("turn.checkout", "request")
class TurnCheckout(Message):
    """Make a finished turn the head (undo; the next turn branches from it)."""

    session_id: str = param(pattern=ID)
    """Session id."""
    turn_id: str = param(pattern=ID)
    """Turn to check out."""


# --------------------------------------------------------------------------- uploads


@message("upload.begin", "request")
class UploadBegin(Message):
    """Start uploading one file into a session (for a remote sidecar)."""

    session_id: str = param(pattern=ID)
    """Session id."""
    path: str = param(path="relative", max_len=1024)
    """Destination, relative to the session's upload folder."""
    size: int = param(ge=0, le=64 * GiB)
    """File size in bytes."""
    sha256: str = param(pattern=r"[0-9a-f]{64}")
    """Hex SHA-256 of the whole file."""


@message("upload.ready", "reply")
class UploadReady(Message):
    """The upload may proceed in chunks of at most `chunk_size` bytes."""

    upload_id: str = param(pattern=ID)
    """Upload id."""
    chunk_size: int = param(ge=1, le=64 << 20)
    """Largest chunk accepted, bytes."""


@message("upload.chunk", "request")
class UploadChunk(Message):
    """One chunk; chunks are written at `offset` (re-sending a chunk is harmless)."""

    upload_id: str = param(pattern=ID)
    """Upload id."""
    offset: int = param(ge=0, le=64 * GiB)
    """Byte offset of this chunk."""
    data: np.ndarray = param(dtypes=("|u1",), ndim=(1,), max_bytes=64 << 20)
    """The bytes, uint8 [n]."""


@message("upload.commit", "request")
class UploadCommit(Message):
    """Finish: the server checks size and SHA-256, then moves the file in place."""

    upload_id: str = param(pattern=ID)
    """Upload id."""


@message("upload.abort", "request")
class UploadAbort(Message):
    """Give up an upload and delete its partial file."""

    upload_id: str = param(pattern=ID)
    """Upload id."""


@message("upload.done", "reply")
class UploadDone(Message):
    """A committed file."""

    path: str = param(path="relative", max_len=1024)
    """Where it landed, relative to the session's upload folder."""
    size: int = param(ge=0)
    """Bytes."""
    sha256: str = param(pattern=r"[0-9a-f]{64}")
    """Verified SHA-256."""


# --------------------------------------------------------------------------- downloads


@message("download.chunk", "request", idempotent=True)
class DownloadChunk(Message):
    """Read part of a file a session exported (so a remote sidecar's exports reach the
    user): reading from `offset` lets an interrupted download resume."""

    session_id: str = param(pattern=ID)
    """Session id."""
    path: str = param(path="relative", max_len=1024)
    """File, relative to the session folder; only files under exports/ are served."""
    offset: int = param(0, ge=0, le=64 * GiB)
    """First byte wanted."""
    length: int = param(4 << 20, ge=1, le=16 << 20)
    """Bytes wanted at most."""


@message("download.data", "reply")
class DownloadData(Message):
    """Bytes of an exported file, with the whole file's size and SHA-256 to check against."""

    path: str = param(path="relative", max_len=1024)
    """File, relative to the session folder."""
    offset: int = param(ge=0, le=64 * GiB)
    """Byte offset of `data`."""
    size: int = param(ge=0, le=64 * GiB)
    """Size of the whole file, bytes."""
    sha256: str = param(pattern=r"[0-9a-f]{64}")
    """Hex SHA-256 of the whole file."""
    data: np.ndarray = param(dtypes=("|u1",), ndim=(1,), max_bytes=16 << 20)
    """The bytes, uint8 [n] (empty at the end of the file)."""


# --------------------------------------------------------------------------- jobs (requests)


@message("job.train_base", "request")
class JobTrainBase(Message):
    """Train the base NeRF (paper Sec. 4.1)."""

    session_id: str = param(pattern=ID)
    """Session id."""
    steps: int | None = param(None, ge=1, le=10_000_000)
    """Iterations (None = the preset's)."""
    preset: str | None = param(None, pattern=PRESET)
    """Override the session's field preset."""
    dataset_path: str | None = param(None, path="relative", max_len=1024)
    """Dataset inside the session's upload folder (for uploaded sessions)."""
    preview_every: int | None = param(None, ge=0, le=10_000_000)
    """Send a job.preview frame every this many iterations (None = sidecar default 50, 0 = none)."""
    preview_interval_s: float | None = param(None, ge=0.0, le=86_400.0)
    """And at least this many seconds apart (None = sidecar default: 2 s, stretched after each
    frame so that previews take at most ~5% of the job's time; 0 = no time limit)."""
    preview_camera: Camera | None = None
    """Camera of the frames (None = first dataset view); rendered with long side <= 256 px."""


@message("job.preview_masks", "request")
class JobPreviewMasks(Message):
    """Run ADSS on one render and return heatmaps, chosen SAM masks and the soft mask."""

    session_id: str = param(pattern=ID)
    """Session id."""
    camera: Camera | None = None
    """Camera to render (or give view_name)."""
    view_name: str | None = param(None, max_len=1024)
    """Dataset view to use (or give camera)."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn whose model renders the image (None = head)."""
    edit_queries: tuple[str, ...] = param((), max_len=200, max_items=MAX_QUERIES)
    """Regions to edit."""
    keep_queries: tuple[str, ...] = param((), max_len=200, max_items=MAX_QUERIES)
    """Regions to keep (inverse mode)."""
    caption: str | None = param(None, max_len=500)
    """Caption to prepend (None = generated with BLIP)."""

    def check(self) -> None:
        if (self.camera is None) == (self.view_name is None):
            raise _fail("JobPreviewMasks", "give exactly one of camera and view_name")
        if not self.edit_queries and not self.keep_queries:
            raise _fail("JobPreviewMasks", "give at least one edit or keep query")


@message("job.run_turn", "request")
class JobRunTurn(Message):
    """One editing turn (paper Sec. 3.1-3.2)."""

    session_id: str = param(pattern=ID)
    """Session id."""
    instruction: str = param(max_len=2000, pattern=r"(?s).*\S.*")
    """Edit instruction for InstructPix2Pix."""
    edit_queries: tuple[str, ...] = param((), max_len=200, max_items=MAX_QUERIES)
    """Regions to edit (ADSS); empty with no keep queries = edit everywhere."""
    keep_queries: tuple[str, ...] = param((), max_len=200, max_items=MAX_QUERIES)
    """Regions to keep (inverse mode)."""
    caption: str | None = param(None, max_len=500)
    """Caption for ADSS (None = generated)."""
    mode: Literal["edit3d", "in2n"] | None = None
    """edit3d = condition on the previous turn's renders; in2n = the baseline (None = the
    method's default)."""
    steps: int | None = param(None, ge=1, le=10_000_000)
    """Iterations (None = the session's field preset decides)."""
    parent_turn: str | None = param(None, pattern=ID)
    """Turn to edit from (None = head)."""
    after_job: str | None = param(None, pattern=ID)
    """Queue on top of this queued or running turn job of the session: the turn it makes
    becomes the parent (instead of parent_turn); if it makes none, this job fails too."""
    edit_rate: int | None = param(None, ge=1, le=100_000)
    """Re-edit views every this many iterations (None = the method's default)."""
    edit_count: int | None = param(None, ge=1, le=1000)
    """Views re-edited each time (None = the method's default)."""
    update: Literal["per_view", "rounds"] | None = None
    """Dataset-update schedule: per_view = edit_count views every edit_rate iterations;
    rounds = every view at once every edit_rate iterations (None = the method's default)."""
    lr: float | None = param(None, ge=1e-9, le=1.0)
    """Field learning rate during the turn (None = the method's default)."""
    seed: int | None = param(None, ge=0, le=2**32 - 1)
    """Random seed (None = the method's default)."""
    editor: str | None = param(None, max_len=200, pattern=r"[A-Za-z0-9_.:-]+")
    """Editor spec ("ip2p" or "package.module:Factory"; None = the method's default)."""
    editor_settings: EditorSettings | None = None
    """InstructPix2Pix settings (None or unset fields = the method's defaults)."""
    preview_every: int | None = param(None, ge=0, le=10_000_000)
    """Send a job.preview frame every this many iterations (None = sidecar default 50, 0 = none)."""
    preview_interval_s: float | None = param(None, ge=0.0, le=86_400.0)
    """And at least this many seconds apart (None = sidecar default: 2 s, stretched after each
    frame so that previews take at most ~5% of the job's time; 0 = no time limit)."""
    preview_camera: Camera | None = None
    """Camera of the frames (None = first dataset view); rendered with long side <= 256 px."""


@message("job.resume_turn", "request")
class JobResumeTurn(Message):
    """Resume an interrupted turn from its last checkpoint."""

    session_id: str = param(pattern=ID)
    """Session id."""
    turn_id: str = param(pattern=ID)
    """Interrupted turn."""
    preview_every: int | None = param(None, ge=0, le=10_000_000)
    """Send a job.preview frame every this many iterations (None = sidecar default 50, 0 = none)."""
    preview_interval_s: float | None = param(None, ge=0.0, le=86_400.0)
    """And at least this many seconds apart (None = sidecar default: 2 s, stretched after each
    frame so that previews take at most ~5% of the job's time; 0 = no time limit)."""
    preview_camera: Camera | None = None
    """Camera of the frames (None = first dataset view); rendered with long side <= 256 px."""


@message("job.discard_turn", "request")
class JobDiscardTurn(Message):
    """Discard an interrupted (or failed/cancelled) turn; finished turns are never removed."""

    session_id: str = param(pattern=ID)
    """Session id."""
    turn_id: str = param(pattern=ID)
    """Turn to discard."""


@message("job.refine", "request")
class JobRefine(Message):
    """Super-resolution fine-tune (paper Sec. 3.3), creating a refine turn."""

    session_id: str = param(pattern=ID)
    """Session id."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn to refine (None = head)."""
    steps: int | None = param(None, ge=1, le=10_000_000)
    """Iterations (None = the method's default)."""
    scale: Literal[2, 4] | None = None
    """Upscaling factor (None = the method's default)."""
    faces: bool | None = None
    """Restore faces with GFPGAN where detected (None = the method's default)."""
    upscaler: Literal["real-esrgan", "lanczos"] | None = None
    """What makes the targets: Real-ESRGAN, or "lanczos", a classical stand-in that needs no
    weights and restores no faces (None = the method's default)."""


@message("job.render", "request")
class JobRender(Message):
    """Render one camera from a turn's model."""

    session_id: str = param(pattern=ID)
    """Session id."""
    camera: Camera
    """Camera in the world frame."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn (None = head)."""
    outputs: tuple[Literal["rgb", "depth", "accumulation"], ...] = param(("rgb",), max_items=3)
    """Which images to return."""
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    """Pixel type of rgb and accumulation (uint8: [0, 1] scaled to 0-255); depth is float32,
    or float16 unless float32 is asked. Large renders fit the sidecar's render budget only
    as float16 or uint8."""

    def check(self) -> None:
        if not self.outputs or len(set(self.outputs)) != len(self.outputs):
            raise _fail("JobRender.outputs", f"need distinct outputs, got {list(self.outputs)}")


@message("job.preview_edit", "request")
class JobPreviewEdit(Message):
    """What a turn would do to one camera: render, ADSS mask, edit, fuse (once per seed)."""

    session_id: str = param(pattern=ID)
    """Session id."""
    camera: Camera | None = None
    """Camera in the world frame (or give view_name)."""
    view_name: str | None = param(None, max_len=1024)
    """A dataset view (or give camera)."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn whose model is edited (None = head)."""
    instruction: str = param(max_len=2000, pattern=r"(?s).*\S.*")
    """Edit instruction for InstructPix2Pix."""
    edit_queries: tuple[str, ...] = param((), max_len=200, max_items=MAX_QUERIES)
    """Regions to edit (ADSS); empty with no keep queries = edit everywhere."""
    keep_queries: tuple[str, ...] = param((), max_len=200, max_items=MAX_QUERIES)
    """Regions to keep (inverse mode)."""
    caption: str | None = param(None, max_len=500)
    """Caption for ADSS (None = generated)."""
    mode: Literal["edit3d", "in2n"] | None = None
    """As in job.run_turn (None = the method's default)."""
    seed: int | None = param(None, ge=0, le=2**32 - 1)
    """The turn's seed: the preview is that turn's first edit of the camera (None = the
    method's default)."""
    seeds: int = param(1, ge=1, le=8)
    """Preview this many seeds, seed, seed + 1, ..."""
    editor: str | None = param(None, max_len=200, pattern=r"[A-Za-z0-9_.:-]+")
    """Editor spec, as in job.run_turn (None = the method's default)."""
    editor_settings: EditorSettings | None = None
    """InstructPix2Pix settings (None or unset fields = the method's defaults)."""

    def check(self) -> None:
        if (self.camera is None) == (self.view_name is None):
            raise _fail("JobPreviewEdit", "give exactly one of camera and view_name")


@message("job.export", "request")
class JobExport(Message):
    """Export geometry in the world frame (and a file inside the session)."""

    session_id: str = param(pattern=ID)
    """Session id."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn (None = head)."""
    kind: Literal["point_cloud", "mesh", "splats", "nerfstudio_run"] = "point_cloud"
    """What to export; splats: the Gaussians of a splatting backend, as a 3DGS PLY;
    nerfstudio_run: an ns-train output folder (config.yml, nerfstudio_models/step-N.ckpt,
    dataparser_transforms.json) pointing at the session's dataset on the sidecar's disk, for
    ns-viewer, ns-render and ns-export there."""
    format: Literal["ply", "obj", "glb"] = "ply"
    """File format (splats: ply only; a nerfstudio run ignores it)."""
    budget: int | None = param(None, ge=1, le=20_000_000)
    """Points of a point cloud (None = the method's default; 20M float32 points fit a
    256 MiB frame). Meshes and splats ignore it."""
    max_views: int | None = param(None, ge=1, le=100_000)
    """Render at most this many dataset views, spread evenly, for a point cloud or mesh
    (None = every view): fewer is faster on a large capture."""
    crop_min: tuple[float, float, float] | None = param(None, ge=-1e6, le=1e6)
    """Crop box corner, world frame (None = scene bounds)."""
    crop_max: tuple[float, float, float] | None = param(None, ge=-1e6, le=1e6)
    """Opposite crop box corner."""
    return_arrays: bool = True
    """Send the geometry back as arrays (else only the file path)."""

    def check(self) -> None:
        if self.kind == "splats" and self.format != "ply":
            raise _fail("JobExport.format", f"splats are written as ply only, got {self.format}")
        if (self.crop_min is None) != (self.crop_max is None):
            raise _fail("JobExport", "give both crop_min and crop_max, or neither")
        if self.kind == "nerfstudio_run" and self.crop_min is not None:
            raise _fail("JobExport", "a nerfstudio_run export is the whole field: no crop box")
        if self.crop_min is not None and self.crop_max is not None and not all(
            lo < hi for lo, hi in zip(self.crop_min, self.crop_max, strict=True)
        ):
            raise _fail("JobExport", f"crop_min {self.crop_min} must be below {self.crop_max}")


@message("job.cancel", "request", idempotent=True)
class JobCancel(Message):
    """Cancel a queued or running job (cooperative; a job.cancelled event follows)."""

    job_id: str = param(pattern=ID)
    """Job id."""


@message("job.status", "request", idempotent=True)
class JobStatus(Message):
    """State of one job, of a session's jobs, or of all jobs."""

    job_id: str | None = param(None, pattern=ID)
    """One job (None = filter by session)."""
    session_id: str | None = param(None, pattern=ID)
    """A session's jobs (None with no job_id = all)."""


@message("job.accepted", "reply")
class JobAccepted(Message):
    """A job was queued; its events carry this job_id."""

    job_id: str = param(pattern=ID)
    """Job id."""
    kind: str = param(pattern=TYPE_NAME, max_len=64)
    """Request type."""
    queue_position: int = param(ge=0, le=MAX_INT32)
    """0 = starts now; n = n jobs ahead."""


@message("job.state", "reply")
class JobStateReply(Message):
    """Reply to job.status."""

    jobs: tuple[JobInfo, ...] = param((), max_items=10_000)
    """Matching jobs."""


# --------------------------------------------------------------------------- results


@message("render.result", "event")
class RenderResult(Message):
    """Images of a render job (pushed as an event, or as the direct reply)."""

    job_id: str = param(pattern=ID)
    """Job id."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn that rendered."""
    camera: Camera
    """The camera rendered."""
    rgb: np.ndarray | None = param(None, dtypes=("|u1", "<f2", "<f4"), shape=(None, None, 3))
    """[H, W, 3] row 0 = top; uint8 (0-255), float16 or float32 in [0, 1]."""
    depth: np.ndarray | None = param(None, dtypes=("<f2", "<f4"), ndim=(2,), nonfinite=True)
    """[H, W] float32 (or float16) distance along the ray, world units (inf = nothing hit)."""
    accumulation: np.ndarray | None = param(None, dtypes=("|u1", "<f2", "<f4"), ndim=(2,))
    """[H, W] opacity, as rgb's pixel type."""


SPLAT_ARRAYS = ("sh_dc", "opacity_logits", "log_scales", "rotations")
"""ExportResult arrays that, with points (the centres), carry Gaussian splats."""


@message("export.result", "event")
class ExportResult(Message):
    """Geometry of an export job, world frame."""

    job_id: str = param(pattern=ID)
    """Job id."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn exported."""
    kind: Literal["point_cloud", "mesh", "splats", "nerfstudio_run"]
    """What was exported."""
    format: Literal["ply", "obj", "glb", "yml"]
    """File format written (yml: a nerfstudio run, `path` names its config.yml)."""
    path: str = param(path="relative", max_len=1024)
    """File, relative to the session folder."""
    points: np.ndarray | None = param(None, dtypes=("<f4",), shape=(None, 3))
    """[N, 3] float32 positions (vertices for a mesh)."""
    colors: np.ndarray | None = param(None, dtypes=("|u1", "<f4"), shape=(None, 3))
    """[N, 3] uint8 or float32 colours."""
    normals: np.ndarray | None = param(None, dtypes=("<f4",), shape=(None, 3))
    """[N, 3] float32 unit normals."""
    faces: np.ndarray | None = param(None, dtypes=("<i4",), shape=(None, 3))
    """[M, 3] int32 vertex indices (meshes)."""
    sh_dc: np.ndarray | None = param(None, dtypes=("<f4",), shape=(None, 3))
    """Splats: [N, 3] float32 degree-0 SH coefficients (colour = 0.5 + 0.28209479·sh_dc)."""
    opacity_logits: np.ndarray | None = param(None, dtypes=("<f4",), ndim=(1,))
    """Splats: [N] float32 opacity before the sigmoid."""
    log_scales: np.ndarray | None = param(None, dtypes=("<f4",), shape=(None, 3))
    """Splats: [N, 3] float32 log of the per-axis standard deviations."""
    rotations: np.ndarray | None = param(None, dtypes=("<f4",), shape=(None, 4))
    """Splats: [N, 4] float32 quaternions w, x, y, z (normalised by readers)."""

    def check(self) -> None:
        if (self.kind == "nerfstudio_run") != (self.format == "yml"):
            raise _fail("ExportResult.format", f"{self.format!r} does not fit kind {self.kind!r}")
        n = None if self.points is None else len(self.points)
        for name in ("colors", "normals", *SPLAT_ARRAYS):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise _fail(f"ExportResult.{name}", f"has {len(value)} rows, points has {n}")
        missing = [name for name in SPLAT_ARRAYS if getattr(self, name) is None]
        if self.kind == "splats" and n is not None and missing:
            raise _fail("ExportResult", f"splats with points need {', '.join(missing)} too")
        faces = self.faces
        if faces is not None and faces.size and (n is None or faces.min() < 0 or faces.max() >= n):
            raise _fail("ExportResult.faces", f"indices must lie in [0, {n})")


@message("edit_preview.result", "event")
class EditPreviewResult(Message):
    """A job.preview_edit's images: the render, the fusion mask and one edit per seed."""

    job_id: str = param(pattern=ID)
    """Job id."""
    view_name: str = param(max_len=1024)
    """Camera name the images show."""
    seeds: tuple[int, ...] = param(max_items=8)
    """Seed of each edit."""
    before: np.ndarray = param(dtypes=("|u1",), shape=(None, None, 3))
    """[H, W, 3] uint8 render of the model being edited."""
    mask: np.ndarray = param(dtypes=("<f4",), ndim=(2,))
    """[H, W] float32 fusion mask, 1 = edited (all ones without queries)."""
    after: np.ndarray = param(dtypes=("|u1",), ndim=(4,))
    """[S, H, W, 3] uint8 fused edit per seed."""

    def check(self) -> None:
        h, w = self.before.shape[:2]
        if self.mask.shape != (h, w) or self.after.shape[1:] != (h, w, 3):
            raise _fail("EditPreviewResult", "before, mask and after sizes differ")
        if self.after.shape[0] != len(self.seeds):
            raise _fail("EditPreviewResult", "one after image per seed")


@message("masks.result", "event")
class MasksResult(Message):
    """ADSS preview: caption, per-query heatmaps and chosen SAM masks, fused soft mask."""

    job_id: str = param(pattern=ID)
    """Job id."""
    caption: str = param(max_len=500)
    """Caption used."""
    queries: tuple[str, ...] = param(max_len=200, max_items=2 * MAX_QUERIES)
    """Edit then keep queries."""
    roles: tuple[Literal["edit", "keep"], ...] = param(max_items=2 * MAX_QUERIES)
    """Role of each query."""
    heatmaps: np.ndarray = param(dtypes=("<f4",), ndim=(3,))
    """[Q, H, W] float32 Grad-CAM maps in [0, 1]."""
    masks: np.ndarray = param(dtypes=("|b1", "|u1"), ndim=(3,))
    """[Q, H, W] chosen SAM mask per query."""
    iou: np.ndarray = param(dtypes=("<f4",), ndim=(1,))
    """[Q] IoU of the chosen mask with the thresholded heatmap."""
    runner_up_iou: np.ndarray = param(dtypes=("<f4",), ndim=(1,), nonfinite=True)
    """[Q] IoU of the second-best mask (NaN if none)."""
    soft_mask: np.ndarray = param(dtypes=("<f4",), ndim=(2,))
    """[H, W] float32 fused soft mask, 1 = edit."""

    def check(self) -> None:
        q = len(self.queries)
        if len(self.roles) != q or self.heatmaps.shape[0] != q or self.masks.shape[0] != q:
            raise _fail("MasksResult", f"{q} queries but roles/heatmaps/masks disagree")
        if self.iou.shape != (q,) or self.runner_up_iou.shape != (q,):
            raise _fail("MasksResult", "iou arrays must have one entry per query")
        if not self.heatmaps.shape[1:] == self.masks.shape[1:] == self.soft_mask.shape:
            raise _fail("MasksResult", "heatmaps, masks and soft_mask sizes differ")


# --------------------------------------------------------------------------- events


@message("job.queued", "event")
class JobQueued(Message):
    """A job waits; `position` jobs are ahead of it."""

    job_id: str = param(pattern=ID)
    """Job id."""
    kind: str = param(pattern=TYPE_NAME, max_len=64)
    """Request type."""
    position: int = param(ge=0, le=MAX_INT32)
    """Jobs ahead."""


@message("job.started", "event")
class JobStarted(Message):
    """A job started running."""

    job_id: str = param(pattern=ID)
    """Job id."""
    kind: str = param(pattern=TYPE_NAME, max_len=64)
    """Request type."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn the job creates or works on."""


@message("job.progress", "event")
class JobProgress(Message):
    """Progress of the running job."""

    job_id: str = param(pattern=ID)
    """Job id."""
    step: int = param(ge=0, le=MAX_INT32)
    """Steps done in the current phase."""
    total: int = param(0, ge=0, le=MAX_INT32)
    """Steps planned in the current phase (0 = unknown)."""
    loss: float | None = param(None, nonfinite=True)
    """Current training loss (NaN is reported, not hidden); None in a phase that does not
    train."""
    eta_s: float | None = param(None, ge=0.0)
    """Estimated seconds left in the whole job."""
    message: str = param("", max_len=4096)
    """"phase: detail", e.g. "prerender: images/frame_00003.png"."""
    fraction: float = param(0.0, ge=0.0, le=1.0)
    """Share of the whole job done, across its phases: the one bar to draw (it never goes
    back)."""
    phase: str = param("", max_len=64)
    """Current phase, e.g. "prerender", "masks", "turn"."""
    editors: tuple[EditorStatus, ...] = param((), max_items=MAX_EDITORS)
    """The session's editor pool during a turn (empty without one)."""


@message("job.preview", "event")
class JobPreview(Message):
    """A preview frame during a job."""

    job_id: str = param(pattern=ID)
    """Job id."""
    step: int = param(0, ge=0, le=MAX_INT32)
    """Step at which it was rendered."""
    image: np.ndarray = param(dtypes=("|u1",), shape=(None, None, None))
    """[H, W, 3 or 4] uint8, row 0 = top."""
    view_name: str | None = param(None, max_len=1024)
    """Dataset view shown, if any."""

    def check(self) -> None:
        if self.image.shape[2] not in (3, 4):
            raise _fail("JobPreview.image", f"needs 3 or 4 channels, got {self.image.shape[2]}")


@message("job.finished", "event")
class JobFinished(Message):
    """A job finished; `result` summarises it (e.g. turn id, timings, file paths)."""

    job_id: str = param(pattern=ID)
    """Job id."""
    kind: str = param(pattern=TYPE_NAME, max_len=64)
    """Request type."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn created or touched."""
    result: Scalars = param(default_factory=dict)
    """Summary values."""


@message("job.failed", "event")
class JobFailed(Message):
    """A job failed (exception, worker crash, out of memory)."""

    job_id: str = param(pattern=ID)
    """Job id."""
    kind: str = param(pattern=TYPE_NAME, max_len=64)
    """Request type."""
    reason: str = param(max_len=4096)
    """One-line reason."""
    traceback: str = param("", max_len=65536)
    """Traceback from the worker, if any."""


@message("job.cancelled", "event")
class JobCancelled(Message):
    """A job stopped on request."""

    job_id: str = param(pattern=ID)
    """Job id."""
    kind: str = param(pattern=TYPE_NAME, max_len=64)
    """Request type."""
    turn_id: str | None = param(None, pattern=ID)
    """Turn left cancelled (resumable only if interrupted)."""


# --------------------------------------------------------------------------- resync


@message("events.since", "request", idempotent=True)
class EventsSince(Message):
    """Ask for a session's events after `after_seq` (they are re-sent, then events.replayed)."""

    session_id: str = param(pattern=ID)
    """Session id."""
    after_seq: int = param(ge=0)
    """Last sequence number the client has (0 = none)."""


@message("events.replayed", "reply")
class EventsReplayed(Message):
    """End of a resync: events (after_seq, last_seq] were re-sent unless `complete` is False.

    When the ring no longer holds them, `complete` is False, nothing was re-sent and `jobs`
    is a snapshot; the client should re-open the session to refresh its summary.
    """

    session_id: str = param(pattern=ID)
    """Session id."""
    after_seq: int = param(ge=0)
    """As requested."""
    last_seq: int = param(ge=0)
    """The session's latest sequence number."""
    replayed: int = param(0, ge=0)
    """Events re-sent before this reply."""
    complete: bool = True
    """All missed events were re-sent."""
    jobs: tuple[JobInfo, ...] = param((), max_items=10_000)
    """The session's current jobs (snapshot)."""


EVENT_TYPES = frozenset(
    name for name, cls in MESSAGE_TYPES.items() if cls.direction == "event"
)
"""Types pushed by the server with a session and a sequence number."""

__all__ = [
    "EVENT_TYPES",
    "MESSAGE_TYPES",
    "Camera",
    "Header",
    "JobInfo",
    "Message",
    "SessionInfo",
    "TurnInfo",
    "message",
    *(cls.__name__ for cls in MESSAGE_TYPES.values()),
]
