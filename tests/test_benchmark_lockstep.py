"""The benchmarks' lock step: one iteration of one kind at a time, strictly in turn."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import lockstep


def test_kinds_take_turns_one_iteration_at_a_time() -> None:
    log: list[tuple[str, int]] = []
    running = threading.Lock()

    def loop(name: str, pause_s: float):
        def run(clock: lockstep.StepClock) -> None:
            for step in range(1, clock.total + 1):
                assert running.acquire(blocking=False), f"{name} ran beside another kind"
                time.sleep(pause_s)
                log.append((name, step))
                running.release()
                clock.iteration_done(step)

        return run

    times = lockstep.in_lock_step({"a": loop("a", 0.002), "b": loop("b", 0.02)}, 8)
    assert log == [(name, step) for step in range(1, 9) for name in ("a", "b")]
    assert len(times["a"]) == len(times["b"]) == 8 - lockstep.WARMUP
    # each kind is timed for its own iterations only, not while the other holds the baton
    assert max(times["a"]) < 0.015 < min(times["b"])


def test_a_failing_kind_stops_nobody_and_is_raised() -> None:
    def broken(clock: lockstep.StepClock) -> None:
        clock.iteration_done(1)
        raise ValueError("diverged")

    def fine(clock: lockstep.StepClock) -> None:
        for step in range(1, clock.total + 1):
            clock.iteration_done(step)

    with pytest.raises(ValueError, match="diverged"):
        lockstep.in_lock_step({"broken": broken, "fine": fine}, 6)
