"""Where a turn's one-view edits run: in the training process, or on a pool of editors.

The turn renders each view it edits from the current field (only the field can) and hands
the rest of the edit — editor call and fusion, `view_edit.edit_render` — to an
`EditDispatcher` as an `EditJob`. The turn keeps the jobs it submitted until their results
replace the views' targets, in submission order, at a step boundary; a dispatcher only
computes. Its `staleness` is how many edit rounds may stay in flight while the field trains
on (docs/method.md, "Editor pool"):

* `LocalDispatcher` (staleness 0): each edit runs in this process before the iteration that
  asked for it, exactly as a turn without a pool;
* `edit3d.editing.ray_pool.RayEditorPool`: editors on Ray actors (other GPUs or machines).

Seeds belong to the job (per view and per round), never to the worker, so where an edit runs
does not change its result.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edit3d.editing.editors import Editor
from edit3d.editing.view_edit import ViewInputs, configured_editor, edit_render
from edit3d.progress import CancelToken

if TYPE_CHECKING:
    from edit3d.editing.turns import TurnSpec


@dataclass(frozen=True)
class EditJob:
    """One view's edit, everything an editor needs besides its weights."""

    seq: int
    """Position among the turn's edits; targets are replaced in this order."""
    step: int
    """The iteration before which the view was rendered (its edit round)."""
    index: int
    """Its place among the round's `edit_count` views."""
    view_name: str
    """The view (dataset image file name) whose target the result replaces."""
    seed: int
    """The editor's noise seed (`view_edit.edit_seed` of the turn seed, step and index)."""
    before: np.ndarray
    """float32 [H, W, 3]: the view rendered from the field at `step`."""
    inputs: ViewInputs
    """Condition, fusion base and mask of the view (fixed for the turn)."""
    spec: TurnSpec
    """The turn: instruction, editor name and editor settings."""


@dataclass(frozen=True)
class EditDone:
    """A finished job and its fused result (the view's new target, float32 [H, W, 3])."""

    job: EditJob
    after: np.ndarray


def run_job(editor: Editor, job: EditJob, cancel: CancelToken | None = None) -> np.ndarray:
    """The fused target of `job` edited by `editor` (configured with the job's settings)."""
    configured = configured_editor(editor, job.spec)
    edit = edit_render(
        job.before, job.view_name, job.spec, configured, job.inputs, seed=job.seed, cancel=cancel
    )
    return edit.after


class EditDispatcher(Protocol):
    """Runs a turn's `EditJob`s; see the module docstring."""

    @property
    def staleness(self) -> int:
        """Edit rounds that may stay in flight while the field trains (0: none)."""
        ...

    def submit(self, job: EditJob) -> None:
        """Queue `job`; returns at once."""
        ...

    def collect(self, *, wait: bool, cancel: CancelToken | None = None) -> list[EditDone]:
        """Jobs finished since the last call, in any order. With `wait`, blocks until at
        least one has finished while any is queued; raises `Cancelled` when `cancel` is set
        (after stopping the jobs in flight)."""
        ...

    def cancel_pending(self) -> None:
        """Stop the jobs in flight and forget every queued one (their results are dropped)."""
        ...

    def stats(self) -> list[dict[str, Any]]:
        """Per worker: {"editor", "device", "edits", "s_per_edit", "alive", "busy", "pid"}
        (empty for edits in this process)."""
        ...


class LocalDispatcher:
    """Edits in this process when the turn asks for the result: the synchronous turn."""

    staleness = 0

    def __init__(self, editor: Editor) -> None:
        self.editor = editor
        self._queue: deque[EditJob] = deque()

    def submit(self, job: EditJob) -> None:
        self._queue.append(job)

    def collect(self, *, wait: bool, cancel: CancelToken | None = None) -> list[EditDone]:
        if not wait or not self._queue:
            return []
        job = self._queue[0]
        after = run_job(self.editor, job, cancel)
        self._queue.popleft()
        return [EditDone(job, after)]

    def cancel_pending(self) -> None:
        self._queue.clear()

    def stats(self) -> list[dict[str, Any]]:
        return []


class EditRounds:
    """A turn's edits from render to target: the jobs it submitted, kept until their results
    replace targets in submission order (so a late result never overwrites a newer one)."""

    def __init__(self, dispatcher: EditDispatcher, apply: Any) -> None:
        """`apply(job, after)` replaces the job's view target (called at step boundaries)."""
        self.dispatcher = dispatcher
        self.apply = apply
        self.pending: dict[int, EditJob] = {}
        """Submitted and not applied yet, by `seq`."""
        self._finished: dict[int, np.ndarray] = {}

    def submit(self, jobs: list[EditJob]) -> None:
        for job in jobs:
            self.pending[job.seq] = job
            self.dispatcher.submit(job)

    def settle(self, cancel: CancelToken | None = None) -> None:
        """Apply what has finished; wait while more rounds are in flight than the
        dispatcher's staleness allows."""
        self._absorb(self.dispatcher.collect(wait=False, cancel=cancel))
        while self.rounds_in_flight() > self.dispatcher.staleness:
            self._wait(cancel)

    def drain(self, cancel: CancelToken | None = None) -> None:
        """Wait for every submitted edit and apply it (the end of a turn)."""
        while self.pending:
            self._wait(cancel)

    def rounds_in_flight(self) -> int:
        return len({job.step for job in self.pending.values()})

    def _wait(self, cancel: CancelToken | None) -> None:
        done = self.dispatcher.collect(wait=True, cancel=cancel)
        if not done:
            raise RuntimeError(
                f"the edit dispatcher holds none of the {len(self.pending)} edits in flight "
                f"(first: {self.pending[min(self.pending)].view_name!r})"
            )
        self._absorb(done)

    def _absorb(self, done: list[EditDone]) -> None:
        for item in done:
            if item.job.seq in self.pending:
                self._finished[item.job.seq] = item.after
        while self.pending and min(self.pending) in self._finished:
            seq = min(self.pending)
            self.apply(self.pending.pop(seq), self._finished.pop(seq))
