"""The records that travel on the pipe between the server and its worker process.

Every message is a frozen dataclass, pickled by multiprocessing. A job travels as `RunJob`
carrying its kind's request record (for the built-in kinds, the protocol request message
itself), so the worker reads typed fields instead of positions in a tuple.

Server → worker: `RunJob`, `StopWorker`.
Worker → server: `WorkerReady`, `MemoryReading`, `JobBegan`, `JobProgressed`, `JobPreviewed`,
`JobSucceeded`, `JobRaised`, `JobStopped`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

JobRequest = Any
"""A job's request record: an instance of a frozen dataclass (see `check_request`)."""


def check_request(kind: str, request: object, expected: type) -> None:
    """Refuse anything but a frozen dataclass of the kind's request type (it must survive
    pickling unchanged and nobody may edit it on the way)."""
    if not isinstance(request, expected):
        raise TypeError(f"job kind {kind!r} takes a {expected.__name__} request, "
                        f"got {type(request).__name__}")
    params = getattr(type(request), "__dataclass_params__", None)
    if not dataclasses.is_dataclass(request) or params is None or not params.frozen:
        raise TypeError(f"job kind {kind!r}: request type {type(request).__name__} "
                        "must be a frozen dataclass")


# ----- server → worker ---------------------------------------------------------------------


@dataclass(frozen=True)
class RunJob:
    """Run one job now."""

    job_id: str
    """Id of the job."""
    kind: str
    """Name of the job kind."""
    session_dir: str | None
    """The session's directory, None for session-less kinds."""
    request: JobRequest
    """The kind's request record."""


@dataclass(frozen=True)
class StopWorker:
    """Exit after the current job."""


# ----- worker → server ---------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerReady:
    """The worker imported its job modules and takes jobs."""

    pid: int
    """Process id of the worker."""
    device: dict
    """Name and memory of the job device (see `sidecar.worker.device_info`)."""


@dataclass(frozen=True)
class MemoryReading:
    """A fresh reading of the job GPU's free memory."""

    gpu_memory_free: int | None
    """Bytes free on the whole device; None where it cannot be read."""


@dataclass(frozen=True)
class JobBegan:
    job_id: str


@dataclass(frozen=True)
class JobProgressed:
    job_id: str
    event: dict
    """An edit3d ProgressEvent as a map."""


@dataclass(frozen=True)
class JobPreviewed:
    job_id: str
    frame: dict
    """{"image": float32 [H, W, 3|4] in [0, 1], **small details such as view_name, step}."""


@dataclass(frozen=True)
class JobSucceeded:
    job_id: str
    result: dict
    """The job function's small result map (arrays and protocol events allowed)."""


@dataclass(frozen=True)
class JobRaised:
    job_id: str
    reason: str
    """"exception" or "out_of_memory"."""
    error: str
    traceback: str


@dataclass(frozen=True)
class JobStopped:
    """The job noticed its cancel request and stopped."""

    job_id: str


WorkerReport = (WorkerReady | MemoryReading | JobBegan | JobProgressed | JobPreviewed
                | JobSucceeded | JobRaised | JobStopped)
