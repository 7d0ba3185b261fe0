"""Per-iteration cost of the training runner's base, turn and refine steps vs a plain step.

"plain" is a bare loop of the field's nerfstudio training iteration (forward, losses,
backward, optimiser step), what nerfstudio's own trainer runs per iteration. The others run
the same field settings from the same trained base on the same scene through
`edit3d.training.TrainingRun`: base training (progress, ETA, checkpoint schedule), an
editing turn with its edits taken out (edit_rate beyond the run, so only iteration 0 edits,
and it is dropped with the warm-up) and the super-resolution fine-tune on given targets.
What remains is exactly what the runner and its overrides add to every iteration.

The kinds run in lock step (`lockstep.py`: one iteration each in turn), so the machine's
drift hits them alike; an iteration's time includes everything the loop does between two
iterations (step hook, checkpoint schedule, `before_iteration`). The turn's pre-renders and
its one edit fall in its first iteration, dropped with the warm-up.

A turn trains with its preset's turn objective (`FieldConfig.turn_objective()`); where that
is not the backend's own loss and batch (e.g. the paper preset's L1 + LPIPS on patches), the
turn is compared with a plain loop of that objective ("plain-turn") instead.

    python benchmarks/bench_turn_overhead.py [--steps 300] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
from pathlib import Path

import numpy as np
from lockstep import WARMUP, StepClock, base_training, in_lock_step

from edit3d.editing.turns import TurnSpec, run_turn
from edit3d.field import field_from_checkpoint
from edit3d.field.objective import TrainingObjective
from edit3d.field.testing import cached_tiny_base
from edit3d.refine.finetune import RefineConfig, RefineState, finetune_super_resolution


class Unchanged:
    """An editor that returns the condition: no edit cost, same data flow."""

    def edit(self, render, condition, instruction, *, view_name, seed=None, cancel=None):
        return np.asarray(condition, dtype=np.float32)


def plain_steps(
    checkpoint: Path, _work: Path, clock: StepClock, objective: TrainingObjective | None = None
) -> None:
    field = field_from_checkpoint(checkpoint)
    targets = field.make_targets(field.dataset_images())
    for step in range(1, clock.total + 1):
        field.train_step(targets, lr=field.config.edit_lr, objective=objective)
        clock.iteration_done(step)


def turn_baseline(config) -> TrainingObjective | None:
    """The turn's objective where it differs from the backend's own step (None: it does not)."""
    objective = config.turn_objective()
    own = TrainingObjective(
        rays_per_batch=config.rays_per_batch, lpips_profile=objective.lpips_profile
    )
    return None if objective == own else objective


def base_steps(checkpoint: Path, work: Path, clock: StepClock) -> None:
    field = field_from_checkpoint(checkpoint)
    base_training(field, work, clock, field.config.edit_lr)


def refine_steps(checkpoint: Path, work: Path, clock: StepClock) -> None:
    field = field_from_checkpoint(checkpoint)
    finetune_super_resolution(
        field,
        RefineConfig(steps=clock.total, lr=field.config.edit_lr),
        targets=field.dataset_images(),
        state=RefineState(work, checkpoint_every=10**9),
        progress=clock.on_progress("refine"),
    )


def turn_steps(checkpoint: Path, work: Path, clock: StepClock) -> None:
    field = field_from_checkpoint(checkpoint)
    steps = clock.total
    spec = TurnSpec("keep everything", steps=steps, edit_rate=steps + 1, lr=field.config.edit_lr)
    run_turn(field, spec, work, Unchanged(), progress=clock.on_progress("turn"),
             checkpoint_every=10**9)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="iterations of each kind")
    parser.add_argument(
        "--quick", action="store_true", help="20 iterations: shows the script runs"
    )
    parser.add_argument("--cache", type=Path, help="folder for the scene and base (default: temp)")
    args = parser.parse_args()
    if args.quick:
        args.steps = WARMUP + 15
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "base"
        _, checkpoint = cached_tiny_base(cache)
        turn_objective = turn_baseline(field_from_checkpoint(checkpoint).config)
        loops = {"plain": plain_steps, "base": base_steps, "turn": turn_steps,
                 "refine": refine_steps}  # fmt: skip
        if turn_objective is not None:
            loops["plain-turn"] = functools.partial(plain_steps, objective=turn_objective)
        kinds = {}
        for kind, loop in loops.items():
            (Path(tmp) / kind).mkdir()
            kinds[kind] = functools.partial(loop, checkpoint, Path(tmp) / kind)
        times = in_lock_step(kinds, args.steps)
    _report(times, turn_objective)


def _report(times: dict[str, list[float]], turn_objective: TrainingObjective | None) -> None:
    plain_s = statistics.median(times["plain"])
    counts = ", ".join(f"{len(v)} {k}" for k, v in times.items())
    print(f"iterations timed in lock step: {counts} ('tiny' preset, 32 px, CPU)")
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
