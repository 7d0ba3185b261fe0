"""Progress reporting and cooperative cancellation shared by every long operation."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class Cancelled(Exception):
    """Raised inside a long operation when its CancelToken was set."""


class CancelToken:
    """A flag checked between iterations and denoising steps.

    Thread-safe; may also wrap an external predicate (e.g. a shared-memory flag set by
    another process) so a worker can be cancelled without a thread of its own.
    """

    def __init__(self, predicate: Callable[[], bool] | None = None) -> None:
        self._event = threading.Event()
        self._predicate = predicate

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if self._event.is_set():
            return True
        if self._predicate is not None and self._predicate():
            self._event.set()
            return True
        return False

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("operation cancelled")


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of a long operation."""

    phase: str
    """What is running: "train_base", "prerender", "turn", "refine", "export", ..."""
    step: int
    """Steps done so far."""
    total: int
    """Steps in the whole operation."""
    loss: float | None = None
    """Latest training loss, when the operation trains."""
    eta_s: float | None = None
    """Estimated seconds left in the whole job (all its phases)."""
    message: str = ""
    """Human-readable detail, e.g. the last edited view."""
    extra: dict[str, object] = field(default_factory=dict)
    """Small JSON-able details (e.g. {"edited_view": "images/frame_00012.png"})."""
    fraction: float | None = None
    """Share of the whole job done, in [0, 1], across its phases (set by `JobProgress`);
    None for an operation of one phase, whose share is step / total."""

    @property
    def job_fraction(self) -> float:
        """The one bar's position: `fraction`, else step / total (0 while total is unknown)."""
        if self.fraction is not None:
            return min(max(self.fraction, 0.0), 1.0)
        return min(self.step / self.total, 1.0) if self.total > 0 else 0.0


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_event: ProgressEvent) -> None:
    """A progress callback that ignores everything."""


class EtaClock:
    """Estimates time left from the mean step time since start (robust enough for UI)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._start = time.monotonic()
        self._start_step = 0

    def restart_at(self, step: int) -> None:
        self._start = time.monotonic()
        self._start_step = step

    def eta(self, step: int) -> float | None:
        done = step - self._start_step
        if done <= 0:
            return None
        per_step = (time.monotonic() - self._start) / done
        return per_step * max(self.total - step, 0)


@dataclass(frozen=True)
class PhasePlan:
    """One phase of a job as planned before it starts (see `JobProgress`)."""

    name: str
    """The `ProgressEvent.phase` its events carry."""
    steps: int
    """Steps it will report (its events' `total`)."""
    step_cost: float = 1.0
    """Expected cost of one step relative to the other phases' steps: the phases' shares of
    the bar, and the ETA of phases not yet started (scaled by the seconds measured so far)."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"PhasePlan.steps must be >= 0, got {self.steps} ({self.name!r})")
        if not self.step_cost > 0:
            raise ValueError(f"PhasePlan.step_cost must be > 0, got {self.step_cost}")

    @property
    def weight(self) -> float:
        return self.steps * self.step_cost


class JobProgress:
    """Turns the phase events of one job into one bar: overall fraction and ETA.

    A `ProgressCallback` that forwards every event to `report` with `fraction` (the share of
    the whole job done, never decreasing) and `eta_s` (seconds left in the whole job) set.
    Phases run in plan order; one that never reports (e.g. pre-renders loaded from disk on
    resume) counts as done once a later phase reports. The current phase's time left comes
    from its measured seconds per step; later phases' from their planned cost at the seconds
    per cost unit measured so far. Events of a phase not in the plan keep the last fraction.
    """

    def __init__(
        self,
        phases: Sequence[PhasePlan],
        report: ProgressCallback,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [phase.name for phase in phases]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"phases must be non-empty with distinct names, got {names}")
        self.phases = tuple(phases)
        self._report = report
        self._clock = clock
        self._index = {name: i for i, name in enumerate(names)}
        self._total_weight = sum(phase.weight for phase in phases) or 1.0
        self._current = -1
        self._last_time, self._last_step = clock(), 0
        self._phase_start, self._phase_first_step = self._last_time, 0
        self._measured_seconds, self._measured_units = 0.0, 0.0  # phases already finished
        self._fraction = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        index = self._index.get(event.phase)
        if index is None:
            self._report(dataclasses.replace(event, fraction=self._fraction))
            return
        now = self._clock()
        if index != self._current:
            self._enter(index, event.step)
        self._last_time, self._last_step = now, event.step
        self._fraction = max(self._fraction, self._fraction_at(index, event))
        eta = self._eta(index, event)
        self._report(dataclasses.replace(event, fraction=self._fraction, eta_s=eta))

    def _enter(self, index: int, first_step: int) -> None:
        if self._current >= 0:
            seconds, units = self._phase_measurement()
            self._measured_seconds += seconds
            self._measured_units += units
        self._current = index
        # The phase began when the job last reported (or started); its first event is one step.
        self._phase_start, self._phase_first_step = self._last_time, first_step - 1

    def _phase_measurement(self) -> tuple[float, float]:
        """(seconds, cost units) of the current phase up to its last event."""
        steps = max(self._last_step - self._phase_first_step, 0)
        seconds = self._last_time - self._phase_start
        return seconds, steps * self.phases[self._current].step_cost

    def _fraction_at(self, index: int, event: ProgressEvent) -> float:
        done = sum(phase.weight for phase in self.phases[:index])
        share = min(event.step / event.total, 1.0) if event.total > 0 else 0.0
        return min((done + self.phases[index].weight * share) / self._total_weight, 1.0)

    def _eta(self, index: int, event: ProgressEvent) -> float | None:
        seconds, units = self._phase_measurement()
        if units <= 0:
            return None
        steps_done = units / self.phases[index].step_cost
        total = event.total if event.total > 0 else self.phases[index].steps
        current_left = seconds / steps_done * max(total - event.step, 0)
        seconds_per_unit = (self._measured_seconds + seconds) / (self._measured_units + units)
        later = sum(phase.weight for phase in self.phases[index + 1 :])
        return current_left + later * seconds_per_unit
