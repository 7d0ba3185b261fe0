"""One training loop for every kind of training: base fit, editing turn, super-resolution.

`TrainingRun` trains a `RadianceField` toward a `TargetStore` from iteration `done` to
`total` (counted within the run) and owns what every run needs: the learning-rate schedule,
periodic resumable checkpoints, save-then-raise on cancel, progress with an ETA, the caller's
step hook, and the seconds spent in each phase. A kind of training is a small override, the
way instruct-nerf2nerf overrides one step of nerfstudio's pipeline:

* base training: a plain `TrainingRun` (phase "train_base");
* an editing turn (`edit3d.editing.turns`): `before_iteration` swaps edited targets in,
  `checkpoint_extra` saves the turn's own state, and its `objective` (the preset's turn loss,
  e.g. IN2N's L1 + LPIPS on patches) replaces the backend's own;
* the super-resolution fine-tune (`edit3d.refine.finetune`): `checkpoint_extra` saves its
  iteration count.

Order inside the loop, for each iteration i ≥ `done`: cancel check; if i > `done`, the step
hook for iteration i − 1 and, every `checkpoint_every` iterations, a checkpoint of the state
before i (resuming re-runs i from there); `before_iteration(i)`; one `train_step`; progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edit3d.field.objective import TrainingObjective
from edit3d.field.radiance import RadianceField, StepResult
from edit3d.field.registry import read_checkpoint
from edit3d.field.targets import TargetStore
from edit3d.progress import (
    Cancelled,
    CancelToken,
    EtaClock,
    ProgressCallback,
    ProgressEvent,
    no_progress,
)

StepHook = Callable[[RadianceField, int], None]
"""(field, iterations done) called after every training iteration, e.g. to render a live
preview. It must leave the field's weights and training state as they are (rendering does)."""

LearningRate = float | Callable[[int], float]
"""A constant learning rate, or one per iteration of the run."""


class TrainingRun:
    """Train `field` toward `targets`; see the module docstring."""

    def __init__(
        self,
        field: RadianceField,
        targets: TargetStore,
        *,
        total: int,
        lr: LearningRate,
        done: int = 0,
        phase: str = "train",
        checkpoint: Path | None = None,
        checkpoint_every: int = 0,
        on_step: StepHook | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        timings: dict[str, float] | None = None,
        objective: TrainingObjective | None = None,
    ) -> None:
        if total < 0 or done < 0:
            raise ValueError(f"total and done must be ≥ 0, got {total} and {done}")
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be ≥ 0, got {checkpoint_every}")
        self.field = field
        self.targets = targets
        self.total = total
        self.lr = lr
        self.done = done
        self.phase = phase
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.on_step = on_step
        self.progress = progress
        self.cancel = cancel
        self.timings = timings if timings is not None else {}
        """Seconds per phase: "train" (training steps), "preview" (the step hook) and what
        overrides time with `timed` (e.g. "edit"); added to across resumed runs."""
        self.objective = objective
        """Loss and batch of every step (None: the backend's own, e.g. nerfacto's MSE)."""
        self.next_step = done
        """The run's next iteration (what a checkpoint taken now resumes at)."""
        self.last: StepResult | None = None
        self._side_seconds = 0.0

    # --- what a kind of training overrides ------------------------------------------

    def before_iteration(self, i: int) -> None:
        """Runs before iteration i (after its periodic checkpoint)."""

    def checkpoint_extra(self) -> dict[str, Any]:
        """State of the override saved with every checkpoint (read back by `resume_state`)."""
        return {}

    def after_save(self) -> None:
        """Runs after each checkpoint is written."""

    def progress_event(self, event: ProgressEvent) -> ProgressEvent:
        """The progress event reported after an iteration (overrides add details)."""
        return event

    # --- the loop ----------------------------------------------------------------------

    def lr_at(self, i: int) -> float:
        return float(self.lr(i)) if callable(self.lr) else float(self.lr)

    def save(self) -> None:
        """Write a resumable checkpoint of the field and `checkpoint_extra()` (if any path)."""
        if self.checkpoint is None:
            return
        extra = self.checkpoint_extra()
        self.field.save_checkpoint(self.checkpoint, extra=extra or None)
        self.after_save()

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Count the block's seconds under `phase`, not as training time."""
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - started
            self.timings[phase] = self.timings.get(phase, 0.0) + seconds
            self._side_seconds += seconds

    def run(self) -> StepResult | None:
        """Train from `done` to `total`; on cancel, save a checkpoint and raise `Cancelled`."""
        first = self.done
        clock = EtaClock(self.total)
        clock.restart_at(first)
        started, side_before = time.monotonic(), self._side_seconds
        try:
            for i in range(first, self.total):
                if self.cancel is not None:
                    self.cancel.raise_if_cancelled()
                self.next_step = i
                if i > first:
                    self._step_hook(i)  # iteration i − 1 is done
                    if self.checkpoint_every and i % self.checkpoint_every == 0:
                        self.save()  # the state before iteration i
                self.before_iteration(i)
                self.last = self.field.train_step(
                    self.targets, lr=self.lr_at(i), objective=self.objective
                )
                self.next_step = i + 1
                event = ProgressEvent(
                    self.phase, i + 1, self.total, loss=self.last.loss, eta_s=clock.eta(i + 1)
                )
                self.progress(self.progress_event(event))
        except Cancelled:
            self._account_training(started, side_before)
            self.save()
            raise
        if self.total > first:
            self._step_hook(self.total)
        self._account_training(started, side_before)
        self.next_step = max(self.total, first)
        return self.last

    def _step_hook(self, done: int) -> None:
        if self.on_step is not None:
            with self.timed("preview"):
                self.on_step(self.field, done)

    def _account_training(self, started: float, side_before: float) -> None:
        side = self._side_seconds - side_before
        self.timings["train"] = self.timings.get("train", 0.0) + (time.monotonic() - started - side)


def resume_state(field: RadianceField, checkpoint: str | Path) -> dict[str, Any]:
    """Load a run's checkpoint into `field`; the override's saved extra state."""
    state = read_checkpoint(checkpoint)
    field.load_state_dict(state)
    extra = state.get("extra") or {}
    return dict(extra) if isinstance(extra, Mapping) else {}


def fit(
    field: RadianceField,
    targets: TargetStore,
    steps: int,
    *,
    lr: LearningRate,
    phase: str = "train",
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> StepResult | None:
    """`steps` iterations of plain training (no checkpoints, no hook): a `TrainingRun`."""
    run = TrainingRun(
        field, targets, total=steps, lr=lr, phase=phase, progress=progress, cancel=cancel
    )
    return run.run()
