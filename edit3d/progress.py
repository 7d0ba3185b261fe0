"""Progress reporting and cooperative cancellation shared by every long operation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
    """Estimated seconds left."""
    message: str = ""
    """Human-readable detail, e.g. the last edited view."""
    extra: dict[str, object] = field(default_factory=dict)
    """Small JSON-able details (e.g. {"edited_view": "images/frame_00012.png"})."""


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
