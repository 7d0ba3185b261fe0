"""The registry of job kinds, and the context a job function runs with in the worker.

A job kind is a plain function `run(ctx: JobContext) -> dict | None` registered under a
name with its request record type (a frozen dataclass; for the built-in kinds, the protocol
request message of the same name). The worker process imports the job modules (by default
`sidecar.edit3d_jobs`; more with `edit3d-sidecar --job-module`), looks the kind up by name
and calls it with the request. The server imports the same modules to check kind names and
request types before queueing, so modules that define kinds keep heavy imports (torch,
edit3d's method) inside the functions.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edit3d.progress import CancelToken, ProgressEvent
from sidecar.errors import SidecarError
from sidecar.pipe import JobPreviewed, JobProgressed, JobRequest, WorkerReport

DEFAULT_JOB_MODULES: tuple[str, ...] = ("sidecar.edit3d_jobs",)
"""Modules whose import registers the built-in job kinds."""

_MIN_PROGRESS_INTERVAL_S = 0.05
"""Progress reports closer together than this are coalesced (the last step always goes)."""


@dataclass
class JobContext:
    """What a job function gets: its parameters, where its session lives, and channels back."""

    job_id: str
    """Id of the job (unique within one sidecar run)."""
    kind: str
    """Name of the job kind."""
    request: JobRequest
    """The kind's request record (validated when it was built)."""
    session_dir: Path | None
    """The session's directory, or None for session-less kinds."""
    cancel: CancelToken
    """Checked by edit3d between iterations and denoising steps."""
    device: str
    """Torch device the sidecar was started for ("cuda", "cpu")."""
    profile: str
    """Model profile: "real" (published weights) or "tiny" (pipeline checks only)."""
    cache: dict[str, object]
    """Lives as long as the worker process: keeps loaded models warm between jobs."""
    send: Callable[[WorkerReport], None] = field(repr=False)
    """Sends one message to the server (used by `progress` and `preview`)."""
    allowed_editors: tuple[str, ...] = ()
    """Editor import paths the operator allowed (see `sidecar.policy.check_editor`)."""
    data_roots: tuple[Path, ...] = ()
    ray_address: str | None = None
    """The operator's Ray cluster for editor pools (None: Ray on this machine)."""
    """Folders datasets and runs may be read from (see `sidecar.policy.resolve_source_path`)."""
    _last_progress: float = field(default=0.0, repr=False)

    @property
    def workspace_dir(self) -> Path:
        if self.session_dir is None:
            raise SidecarError("bad_request", f"job kind {self.kind!r} has no session")
        return self.session_dir / "workspace"

    @property
    def exports_dir(self) -> Path:
        if self.session_dir is None:
            raise SidecarError("bad_request", f"job kind {self.kind!r} has no session")
        path = self.session_dir / "exports"
        path.mkdir(exist_ok=True)
        return path

    def progress(self, event: ProgressEvent) -> None:
        """Report progress (an edit3d ProgressCallback)."""
        now = time.monotonic()
        last_step = event.total > 0 and event.step >= event.total
        if not last_step and now - self._last_progress < _MIN_PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        self.send(JobProgressed(self.job_id, asdict(event)))

    def preview(self, image: np.ndarray, **details: object) -> None:
        """Send a preview frame (float32 [H, W, 3] in [0, 1]) with small details."""
        array = np.ascontiguousarray(image, dtype=np.float32)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"preview image must be [H, W, 3|4], got shape {array.shape}")
        self.send(JobPreviewed(self.job_id, {"image": array, **details}))


JobFunction = Callable[[JobContext], "dict | None"]


@dataclass(frozen=True)
class JobKind:
    """A named kind of job."""

    name: str
    """Name clients use in `job.submit`."""
    run: JobFunction
    """Runs in the worker process; returns a small result map (arrays allowed)."""
    request: type
    """The kind's request record type: a frozen dataclass that checks its own fields."""
    needs_session: bool = True
    """Whether a job of this kind belongs to a session (most do)."""
    description: str = ""
    """One line for `capabilities`."""
    check: Callable[[Any], None] | None = None
    """Refuses (ValueError) a request that its fields allow but the job could never serve,
    before it is queued (e.g. a render too large to send)."""
    interactive: bool = False
    """A short look the user waits for (a render, a mask or edit preview): queued ahead of
    every waiting long job, behind earlier interactive ones; it never interrupts the
    running job."""


_KINDS: dict[str, JobKind] = {}


def register_job_kind(kind: JobKind) -> None:
    """Register (or replace) a job kind."""
    _KINDS[kind.name] = kind


def job_kind(
    name: str,
    request: type,
    *,
    needs_session: bool = True,
    description: str = "",
    check: Callable[[Any], None] | None = None,
    interactive: bool = False,
) -> Callable[[JobFunction], JobFunction]:
    """Decorator form of `register_job_kind`."""

    def decorate(run: JobFunction) -> JobFunction:
        register_job_kind(
            JobKind(name, run, request, needs_session, description, check, interactive)
        )
        return run

    return decorate


def get_job_kind(name: object) -> JobKind:
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise SidecarError("unknown_job_kind", f"no job kind {name!r}; known: {sorted(_KINDS)}")
    return kind


def job_kinds() -> dict[str, JobKind]:
    return dict(_KINDS)


def load_job_modules(modules: Iterable[str]) -> None:
    """Import the modules that register job kinds."""
    for module in modules:
        importlib.import_module(module)
