"""Per-iteration cost of an Edit3D turn's training step vs a plain nerfacto step.

Both run the same field settings from the same trained base on the same scene; the turn's
edit steps are taken out (edit_rate beyond the run, so only iteration 0 edits, and it is
dropped with the warm-up), leaving exactly the override a turn adds to every iteration: the
`on_step` hook, progress wrapping and target-store bookkeeping. Runs alternate
(plain, turn, turn, plain, ...) so drift in machine load hits both alike.

    python benchmarks/bench_turn_overhead.py [--steps 80] [--repeats 2] [--preset tiny]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edit3d.editing.turns import TurnSpec, run_turn
from edit3d.field import field_from_checkpoint
from edit3d.field.testing import cached_tiny_base
from edit3d.progress import ProgressEvent
from edit3d.training import fit

WARMUP = 5


class Unchanged:
    """An editor that returns the condition: no edit cost, same data flow."""

    def edit(self, render, condition, instruction, *, view_name, seed=None, cancel=None):
        return np.asarray(condition, dtype=np.float32)


class StepClock:
    """Seconds between consecutive progress events of one phase."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.stamps: list[float] = []

    def __call__(self, event: ProgressEvent) -> None:
        if event.phase == self.phase:
            self.stamps.append(time.perf_counter())

    def per_step(self) -> list[float]:
        return list(np.diff(self.stamps)[WARMUP:])


def plain_steps(checkpoint: Path, steps: int) -> list[float]:
    field = field_from_checkpoint(checkpoint)
    targets = field.make_targets(field.dataset_images())
    clock = StepClock("train")
    fit(field, targets, steps, lr=field.config.edit_lr, progress=clock)
    return clock.per_step()


def turn_steps(checkpoint: Path, steps: int, work: Path) -> list[float]:
    field = field_from_checkpoint(checkpoint)
    spec = TurnSpec("keep everything", steps=steps, edit_rate=steps + 1, lr=field.config.edit_lr)
    clock = StepClock("turn")
    run_turn(field, spec, work, Unchanged(), progress=clock, checkpoint_every=10**9)
    return clock.per_step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="folder for the scene and base (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "base"
        _, checkpoint = cached_tiny_base(cache)
        plain: list[float] = []
        turn: list[float] = []
        for repeat in range(args.repeats):
            order = ("plain", "turn") if repeat % 2 == 0 else ("turn", "plain")
            for kind in order:
                if kind == "plain":
                    plain += plain_steps(checkpoint, args.steps)
                else:
                    turn += turn_steps(checkpoint, args.steps, Path(tmp) / f"turn{repeat}")
    plain_s, turn_s = statistics.median(plain), statistics.median(turn)
    print(f"iterations timed: {len(plain)} plain, {len(turn)} turn ('tiny' preset, 32 px, CPU)")
    print(f"plain nerfacto step   median {plain_s * 1000:7.1f} ms")
    print(f"Edit3D turn step      median {turn_s * 1000:7.1f} ms (no edit in the step)")
    print(f"ratio turn / plain    {turn_s / plain_s:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
