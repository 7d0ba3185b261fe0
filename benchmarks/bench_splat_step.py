"""Per-iteration cost of edit3d's splatfacto step vs a plain nerfstudio splatfacto step (CPU).

"plain" drives nerfstudio's SplatfactoModel the way nerfstudio's trainer does for one
iteration, written out by hand: pick the next image (its full-image data manager's order),
set the model's step and optimizers (splatfacto's before-iteration callback), forward the
camera, the model's loss dict, zero_grad / backward / one Adam per group, then splatfacto's
after-iteration callback (densification). "edit3d" is the splatfacto backend's own
`train_step` on the same model state, through `edit3d.training.TrainingRun` (progress, ETA,
checkpoint schedule) as base training runs it. Both use the same rasterizer ("torch":
nerfstudio's own forward needs gsplat's CUDA kernels), so the ratio is what the field and
the runner add. The two run in lock step (`lockstep.py`: one iteration each in turn), so
the machine's drift hits both alike; each starts from the same trained base and densifies on
splatfacto's schedule.

    python benchmarks/bench_splat_step.py [--steps 200]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
from pathlib import Path

import torch
from lockstep import StepClock, base_training, in_lock_step

from edit3d.field import field_from_checkpoint, get_preset
from edit3d.field.testing import cached_tiny_base


def plain_steps(checkpoint: Path, _work: Path, clock: StepClock) -> None:
    """nerfstudio's iteration on the field's model, with no edit3d code in the loop."""
    field = field_from_checkpoint(checkpoint)
    model = field.model
    targets = field.make_targets(field.dataset_images())
    images = [targets.image(name) for name in targets.names]
    cameras = [field.nerfstudio_camera(field.view(name)) for name in targets.names]
    optimizers = field.optimizers(field.config.base_lr)  # one Adam per group, as ns-train
    unseen: list[int] = []
    for done, step in enumerate(range(field.step, field.step + clock.total), start=1):
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
        clock.iteration_done(done)


def edit3d_steps(checkpoint: Path, work: Path, clock: StepClock) -> None:
    field = field_from_checkpoint(checkpoint)
    base_training(field, work, clock, field.config.base_lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="iterations of each kind")
    parser.add_argument("--cache", type=Path, help="folder for the scene and base (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "base"
        _, checkpoint = cached_tiny_base(cache, config=get_preset("tiny", "splatfacto"))
        kinds = {}
        for kind, loop in (("plain", plain_steps), ("edit3d", edit3d_steps)):
            (Path(tmp) / kind).mkdir()
            kinds[kind] = functools.partial(loop, checkpoint, Path(tmp) / kind)
        times = in_lock_step(kinds, args.steps)
    plain_s = statistics.median(times["plain"])
    edit3d_s = statistics.median(times["edit3d"])
    counts = ", ".join(f"{len(v)} {k}" for k, v in times.items())
    print(f"iterations timed in lock step: {counts} (splatfacto 'tiny' preset, torch "
          "rasterizer, 32 px, CPU)")  # fmt: skip
    print(f"plain splatfacto step  median {plain_s * 1000:7.1f} ms")
    print(
        f"edit3d splat step      median {edit3d_s * 1000:7.1f} ms   ratio edit3d / plain "
        f"{edit3d_s / plain_s:.3f}  (target <= 1.05)"
    )


if __name__ == "__main__":
    main()
