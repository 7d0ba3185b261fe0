"""Timing kinds of training loop side by side, one iteration each in turn.

On a shared or virtual machine the speed drifts by ±15% over seconds, so loops timed one
after another differ by more than the few percent a benchmark here compares. `in_lock_step`
runs every kind in its own thread and a `Baton` lets exactly one of them run one iteration
at a time, in turn: all kinds see the same drift. A kind's iteration is timed from taking
the baton to the end of that iteration, so it includes everything its loop does between two
iterations and nothing of the others.

A kind is a callable taking its `StepClock`, called holding the baton; after each iteration
its loop calls `clock.iteration_done(step)` (step counted from 1), directly or through
`clock.on_progress(phase)` as the progress callback of a `TrainingRun`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from edit3d.field.radiance import RadianceField
from edit3d.progress import ProgressEvent
from edit3d.training import TrainingRun

WARMUP = 5
"""Iterations dropped from each kind's figures (set-up and first allocations fall in the
first ones)."""


class Baton:
    """Lets the registered kinds run one iteration each, in turn, never two at once."""

    def __init__(self, kinds: list[str]) -> None:
        self._order = list(kinds)
        self._holder = self._order[0]
        self._changed = threading.Condition()

    def take(self, kind: str) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._holder == kind)

    def pass_on(self, kind: str, *, retire: bool = False) -> None:
        with self._changed:
            index = self._order.index(kind)
            if retire:
                self._order.remove(kind)
            if self._order:
                self._holder = self._order[(index if retire else index + 1) % len(self._order)]
            self._changed.notify_all()


class StepClock:
    """Per-iteration seconds of one kind, from taking the baton to the iteration's end."""

    def __init__(self, kind: str, baton: Baton, total: int) -> None:
        self.kind, self.baton, self.total = kind, baton, total
        self.seconds: list[float] = []
        self.first_step = 0
        """Progress steps count from here (a run resumed at a trained field's step)."""
        self._started = 0.0

    def start(self) -> None:
        self.baton.take(self.kind)
        self._started = time.perf_counter()

    def iteration_done(self, step: int) -> None:
        self.seconds.append(time.perf_counter() - self._started)
        if step < self.total:  # the last iteration keeps the baton until its run has ended
            self.baton.pass_on(self.kind)
            self.start()

    def on_progress(self, phase: str) -> Callable[[ProgressEvent], None]:
        """A progress callback that counts the iterations of `phase`."""

        def callback(event: ProgressEvent) -> None:
            if event.phase == phase:
                self.iteration_done(event.step - self.first_step)

        return callback

    def per_step(self, warmup: int = WARMUP) -> list[float]:
        return self.seconds[warmup:]


Kind = Callable[[StepClock], None]


def in_lock_step(kinds: dict[str, Kind], steps: int) -> dict[str, list[float]]:
    """Run every kind for `steps` iterations, one iteration at a time in turn; the seconds
    of each kind's iterations after the warm-up."""
    baton = Baton(list(kinds))
    clocks = {kind: StepClock(kind, baton, steps) for kind in kinds}
    errors: list[BaseException] = []

    def run(kind: str) -> None:
        clock = clocks[kind]
        try:
            clock.start()
            kinds[kind](clock)
        except BaseException as error:  # raised once the others have finished
            errors.append(error)
        finally:
            baton.pass_on(kind, retire=True)

    threads = [threading.Thread(target=run, args=(kind,), name=kind) for kind in kinds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    for kind, clock in clocks.items():
        if len(clock.seconds) != steps:
            raise RuntimeError(f"{kind} reported {len(clock.seconds)} iterations, not {steps}")
    return {kind: clock.per_step() for kind, clock in clocks.items()}


def base_training(field: RadianceField, work: Path, clock: StepClock, lr: float) -> None:
    """`clock.total` iterations of base training from the field's step, as `TrainingRun`
    runs it (progress, ETA, checkpoint schedule), timed by `clock`."""
    targets = field.make_targets(field.dataset_images())
    clock.first_step = field.step
    TrainingRun(
        field, targets, total=field.step + clock.total, lr=lr, done=field.step,
        phase="train_base", checkpoint=work / "base.pt", checkpoint_every=10**9,
        progress=clock.on_progress("train_base"),
    ).run()  # fmt: skip
