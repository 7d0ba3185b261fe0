"""Deterministic job kinds for testing the job lifecycle (imported with --job-module).

They exercise the machinery honestly: real progress through the real pipe, cooperative
cancel through the real shared event, real exceptions, a real abort and a real SIGSEGV.
Each kind takes a request record: the ones clients submit over the real protocol are request
messages, exactly like a built-in job's (the module is imported by the test client, the
server and the worker alike); the others, submitted to a JobManager directly, are plain
frozen dataclasses.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

# protocol resolves inherited annotations in this module's namespace
from typing import ClassVar, Literal  # noqa: F401

import numpy as np

from edit3d.progress import ProgressEvent
from protocol.messages import ID, JobRunTurn, Message, message
from protocol.schema import param
from sidecar.kinds import JobContext, job_kind


@message("test.count", "request")
class TestCount(Message):
    """Count steps with progress."""

    session_id: str = param(pattern=ID)
    """Session id."""
    steps: int = param(5, ge=0, le=100_000)
    """Steps to count."""
    delay_s: float = param(0.01, ge=0.0, le=10.0)
    """Sleep per step."""
    preview: bool = False
    """Send one preview frame at step 1."""


@message("test.raise", "request")
class TestRaise(Message):
    """Fail with an exception."""

    session_id: str = param(pattern=ID)
    """Session id."""


@message("test.abort", "request")
class TestAbort(Message):
    """Abort the worker process."""

    session_id: str = param(pattern=ID)
    """Session id."""


@message("test.segfault", "request")
class TestSegfault(Message):
    """Kill the worker with SIGSEGV."""

    session_id: str = param(pattern=ID)
    """Session id."""


@dataclass(frozen=True)
class TestTurn:
    """Make a "turn" called `name` after `delay_s`."""

    name: str
    delay_s: float = 0.0
    parent_turn: str | None = None
    after_job: str | None = None


@dataclass(frozen=True)
class TestSleep:
    """Sleep without ever checking the cancel token."""

    seconds: float = 30.0


@dataclass(frozen=True)
class NoFields:
    """The request of kinds that need nothing."""


@job_kind("test.count", TestCount, needs_session=False)
def count(ctx: JobContext) -> dict:
    """Counts `steps` steps of `delay_s`, reporting each, checking cancel each step."""
    request: TestCount = ctx.request
    steps, delay = request.steps, request.delay_s
    for step in range(1, steps + 1):
        ctx.cancel.raise_if_cancelled()
        time.sleep(delay)
        ctx.progress(ProgressEvent("count", step, steps, loss=1.0 / step))
        if request.preview and step == 1:
            image = np.zeros((4, 6, 3), np.float32)
            image[0, 0] = (1.0, 0.5, 0.25)
            ctx.preview(image, view_name="frame_00000.png")
    ctx.cache["runs"] = int(ctx.cache.get("runs", 0)) + 1  # type: ignore[arg-type]
    return {"counted": steps, "worker_pid": os.getpid(), "warm_runs": ctx.cache["runs"]}


@job_kind("test.look", NoFields, needs_session=False, interactive=True)
def look(ctx: JobContext) -> dict:
    """A short interactive job (as a render or a preview is)."""
    return {"looked": True}


@job_kind("test.turn", TestTurn, needs_session=False)
def make_turn(ctx: JobContext) -> dict:
    """Makes a "turn" named by the request, on the parent the job was given."""
    time.sleep(ctx.request.delay_s)
    return {"turn_id": ctx.request.name, "parent": ctx.request.parent_turn,
            "after_job": ctx.request.after_job}


@job_kind("test.raise", TestRaise, needs_session=False)
def raise_error(ctx: JobContext) -> dict:
    raise RuntimeError("deliberate failure in test.raise")


@job_kind("test.abort", TestAbort, needs_session=False)
def abort(ctx: JobContext) -> dict:
    os.abort()


@job_kind("test.segfault", TestSegfault, needs_session=False)
def segfault(ctx: JobContext) -> dict:
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(5)
    return {}


@job_kind("test.ignore_cancel", TestSleep, needs_session=False)
def ignore_cancel(ctx: JobContext) -> dict:
    """Never checks its cancel token (a stuck job): only the cancel deadline stops it."""
    time.sleep(ctx.request.seconds)
    return {}


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the worker recognises by name."""


@job_kind("test.oom", NoFields, needs_session=False)
def out_of_memory(ctx: JobContext) -> dict:
    raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@message("test.orphan_node", "request")
class TestOrphanNode(Message):
    """Open the session's base node and leave it "running", then die or fail."""

    session_id: str = param(pattern=ID)
    """Session id."""
    end: Literal["disk_full", "hang"] = "disk_full"
    """How the job ends: an ENOSPC error, or waiting (for a kill -9) until cancelled."""


@job_kind("test.orphan_node", TestOrphanNode)
def orphan_node(ctx: JobContext) -> dict:
    """Opens a node the way edit3d's node-writing jobs do, then stops without closing it,
    as a killed worker or a write failing on a full disk leaves it."""
    import errno

    from edit3d.workspace import BASE_ID, Workspace

    root = ctx.workspace_dir
    if (root / "workspace.json").is_file():
        workspace = Workspace.open(root)
    else:
        workspace = Workspace.create(root, dataset=ctx.session_dir, preset="tiny")
    workspace._start_node(BASE_ID, None, "base", {"steps": 10})
    if ctx.request.end == "disk_full":
        raise OSError(errno.ENOSPC, "No space left on device")
    step = 0
    while True:
        ctx.cancel.raise_if_cancelled()
        step += 1
        ctx.progress(ProgressEvent("hold", step, 0))
        time.sleep(0.05)


@job_kind("test.echo_turn", JobRunTurn, needs_session=False)
def echo_turn(ctx: JobContext) -> dict:
    """Returns the request record as the worker received it (to check the pipe)."""
    return {"request": ctx.request, "type": type(ctx.request).__name__}
