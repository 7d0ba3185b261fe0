"""Per-iteration cost of the training runner's base, turn and refine steps vs a plain step.

"plain" is a bare loop of the field's nerfstudio training iteration (forward, losses,
backward, optimiser step), what nerfstudio's own trainer runs per iteration. The others run
the same field settings from the same trained base on the same scene through
`edit3d.training.TrainingRun`: base training (progress, ETA, checkpoint schedule), an
editing turn with its edits taken out (edit_rate beyond the run, so only iteration 0 edits,
and it is dropped with the warm-up) and the super-resolution fine-tune on given targets.
What remains is exactly what the runner and its overrides add to every iteration. Kinds
alternate in a rotating order so drift in machine load hits all alike.

A turn trains with its preset's turn objective (`FieldConfig.turn_objective()`); where that
is not the backend's own loss and batch (e.g. the paper preset's L1 + LPIPS on patches), the
turn is compared with a plain loop of that objective ("plain-turn") instead.

    python benchmarks/bench_turn_overhead.py [--steps 80] [--repeats 4] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edit3d.editing.turns import TurnSpec, run_turn
from edit3d.field import field_from_checkpoint
from edit3d.field.objective import TrainingObjective
from edit3d.field.testing import cached_tiny_base
from edit3d.progress import ProgressEvent
from edit3d.refine.finetune import RefineConfig, RefineState, finetune_super_resolution
from edit3d.training import TrainingRun

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


def plain_steps(
    checkpoint: Path, steps: int, _work: Path, objective: TrainingObjective | None = None
) -> list[float]:
    field = field_from_checkpoint(checkpoint)
    targets = field.make_targets(field.dataset_images())
    stamps = []
    for _ in range(steps):
        field.train_step(targets, lr=field.config.edit_lr, objective=objective)
        stamps.append(time.perf_counter())
    return list(np.diff(stamps)[WARMUP:])


def turn_baseline(config) -> TrainingObjective | None:
    """The turn's objective where it differs from the backend's own step (None: it does not)."""
    objective = config.turn_objective()
    own = TrainingObjective(
        rays_per_batch=config.rays_per_batch, lpips_profile=objective.lpips_profile
    )
    return None if objective == own else objective


def base_steps(checkpoint: Path, steps: int, work: Path) -> list[float]:
    field = field_from_checkpoint(checkpoint)
    targets = field.make_targets(field.dataset_images())
    clock = StepClock("train_base")
    TrainingRun(
        field, targets, total=field.step + steps, lr=field.config.edit_lr, done=field.step,
        phase="train_base", checkpoint=work / "base.pt", checkpoint_every=10**9,
        progress=clock,
    ).run()  # fmt: skip
    return clock.per_step()


def refine_steps(checkpoint: Path, steps: int, work: Path) -> list[float]:
    field = field_from_checkpoint(checkpoint)
    clock = StepClock("refine")
    finetune_super_resolution(
        field,
        RefineConfig(steps=steps, lr=field.config.edit_lr),
        targets=field.dataset_images(),
        state=RefineState(work, checkpoint_every=10**9),
        progress=clock,
    )
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
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument(
        "--quick", action="store_true", help="20 steps, 1 repeat: shows the script runs"
    )
    parser.add_argument("--cache", type=Path, help="folder for the scene and base (default: temp)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = WARMUP + 15, 1
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "base"
        _, checkpoint = cached_tiny_base(cache)
        turn_objective = turn_baseline(field_from_checkpoint(checkpoint).config)
        kinds = {"plain": plain_steps, "base": base_steps, "turn": turn_steps,
                 "refine": refine_steps}  # fmt: skip
        if turn_objective is not None:
            kinds["plain-turn"] = functools.partial(plain_steps, objective=turn_objective)
        times = _timed(kinds, checkpoint, args.steps, args.repeats, Path(tmp))
    _report(times, turn_objective)


def _timed(
    kinds: dict[str, Callable[[Path, int, Path], list[float]]],
    checkpoint: Path,
    steps: int,
    repeats: int,
    tmp: Path,
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = list(kinds)
    for repeat in range(repeats):
        for kind in order[repeat % len(order) :] + order[: repeat % len(order)]:
            work = tmp / f"{kind}{repeat}"
            work.mkdir()
            times[kind] += kinds[kind](checkpoint, steps, work)
    return times


def _report(times: dict[str, list[float]], turn_objective: TrainingObjective | None) -> None:
    plain_s = statistics.median(times["plain"])
    counts = ", ".join(f"{len(v)} {k}" for k, v in times.items())
    print(f"iterations timed: {counts} ('tiny' preset, 32 px, CPU)")
    print(f"plain nerfacto step   median {plain_s * 1000:7.1f} ms")
    if turn_objective is not None:
        print(f"turn objective: {turn_objective}")
    for kind in ("base", "turn", "refine"):
        baseline = "plain-turn" if kind == "turn" and turn_objective is not None else "plain"
        reference = statistics.median(times[baseline])
        median = statistics.median(times[kind])
        print(
            f"{kind:<6} step           median {median * 1000:7.1f} ms   ratio {kind} / "
            f"{baseline} {median / reference:.3f}  (target <= 1.05)"
        )


if __name__ == "__main__":
    main()
