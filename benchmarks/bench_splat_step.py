"""Per-iteration cost of edit3d's splatfacto step vs a plain nerfstudio splatfacto step (CPU).

"plain" drives nerfstudio's SplatfactoModel the way nerfstudio's trainer does for one
iteration, written out by hand: pick the next image (its full-image data manager's order),
set the model's step and optimizers (splatfacto's before-iteration callback), forward the
camera, the model's loss dict, zero_grad / backward / one Adam per group, then splatfacto's
after-iteration callback (densification). "edit3d" is the splatfacto backend's own
`train_step` on the same model state, through `edit3d.training.TrainingRun` (progress, ETA,
checkpoint schedule) as base training runs it. Both use the same rasterizer ("torch":
nerfstudio's own forward needs gsplat's CUDA kernels), so the ratio is what the field and
the runner add.
Kinds alternate in a rotating order so drift in machine load hits both alike.

    python benchmarks/bench_splat_step.py [--steps 60] [--repeats 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edit3d.field import field_from_checkpoint, get_preset
from edit3d.field.testing import cached_tiny_base
from edit3d.progress import ProgressEvent
from edit3d.training import TrainingRun

WARMUP = 5


def plain_steps(checkpoint: Path, steps: int, _work: Path) -> list[float]:
    """nerfstudio's iteration on the field's model, with no edit3d code in the loop."""
    field = field_from_checkpoint(checkpoint)
    model = field.model
    targets = field.make_targets(field.dataset_images())
    images = [targets.image(name) for name in targets.names]
    cameras = [field.nerfstudio_camera(field.view(name)) for name in targets.names]
    optimizers = field.optimizers(field.config.base_lr)  # one Adam per group, as ns-train
    unseen: list[int] = []
    stamps = []
    for step in range(field.step, field.step + steps):
        if not unseen:
            unseen = list(range(len(images)))
        index = unseen.pop(int(torch.randint(len(unseen), (1,))))
        model.step, model.optimizers = step, optimizers
        outputs = model(cameras[index])
        loss = sum(model.get_loss_dict(outputs, {"image": images[index]}).values())
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()
        model.step_post_backward(step)
        stamps.append(time.perf_counter())
    return list(np.diff(stamps)[WARMUP:])


def edit3d_steps(checkpoint: Path, steps: int, work: Path) -> list[float]:
    field = field_from_checkpoint(checkpoint)
    targets = field.make_targets(field.dataset_images())
    stamps: list[float] = []

    def clock(event: ProgressEvent) -> None:
        stamps.append(time.perf_counter())

    TrainingRun(
        field, targets, total=field.step + steps, lr=field.config.base_lr, done=field.step,
        phase="train_base", checkpoint=work / "base.pt", checkpoint_every=10**9, progress=clock,
    ).run()  # fmt: skip
    return list(np.diff(stamps)[WARMUP:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--cache", type=Path, help="folder for the scene and base (default: temp)")
    args = parser.parse_args()
    kinds = {"plain": plain_steps, "edit3d": edit3d_steps}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "base"
        _, checkpoint = cached_tiny_base(cache, config=get_preset("tiny", "splatfacto"))
        order = list(kinds)
        for repeat in range(args.repeats):
            for kind in order[repeat % len(order) :] + order[: repeat % len(order)]:
                work = Path(tmp) / f"{kind}{repeat}"
                work.mkdir()
                times[kind] += kinds[kind](checkpoint, args.steps, work)
    plain_s = statistics.median(times["plain"])
    edit3d_s = statistics.median(times["edit3d"])
    counts = ", ".join(f"{len(v)} {k}" for k, v in times.items())
    print(f"iterations timed: {counts} (splatfacto 'tiny' preset, torch rasterizer, 32 px, CPU)")
    print(f"plain splatfacto step  median {plain_s * 1000:7.1f} ms")
    print(
        f"edit3d splat step      median {edit3d_s * 1000:7.1f} ms   ratio edit3d / plain "
        f"{edit3d_s / plain_s:.3f}  (target <= 1.05)"
    )


if __name__ == "__main__":
    main()
