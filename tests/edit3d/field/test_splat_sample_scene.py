"""A splatfacto base on the project's sample scene reproduces its training views.

Measured under load on the 2-core machine (32 px, 24 views, "tiny" preset, 600 iterations,
~1000 Gaussians, 290 s with the scene's generation): PSNR 21.9 dB over every third view
(a flat colour: 11.2 dB). The Gaussians' centres are not on the ground-truth surfaces at
this scale (an earlier tiny preset: median distance 1.64 scene units over all Gaussians,
0.85 over those with opacity > 0.5; the background colour is painted by Gaussians far from
any surface, and 32 px views leave floaters), so no test claims the 0.05 target here.
"""

from __future__ import annotations

import numpy as np
import pytest

from edit3d.field import field_from_dataset, get_preset
from edit3d.scene.cameras import CameraView
from edit3d.scene.sample import make_sample_scene
from edit3d.training import fit

STEPS = 600


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2)))


@pytest.mark.slow
def test_splat_base_reproduces_the_sample_scene(tmp_path) -> None:
    scene = make_sample_scene(tmp_path / "scene", num_views=24, resolution=32)
    field = field_from_dataset(scene.root, get_preset("tiny", "splatfacto"), seed=0)
    fit(field, field.make_targets(field.dataset_images()), STEPS, lr=field.config.base_lr)
    scores, blank = [], []
    for view in scene.views[::3]:
        world_camera = CameraView("from-blender", view.c2w, view.intrinsics)
        image = scene.image(view.name)
        scores.append(psnr(field.render(world_camera).rgb, image))
        blank.append(psnr(np.full_like(image, image.mean()), image))
    print(
        f"splatfacto sample scene, {STEPS} tiny iterations, {field.gaussians().means.shape[0]} "
        f"Gaussians: PSNR {np.mean(scores):.2f} dB (flat colour {np.mean(blank):.2f} dB)"
    )
    assert np.mean(scores) > 20.0
    assert np.mean(scores) > np.mean(blank) + 8.0
