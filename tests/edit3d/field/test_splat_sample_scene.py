"""A splatfacto base on the project's sample scene: its exported Gaussians sit on the true
surfaces, and it reproduces the training views.

Seeded from the scene's sparse points (`sparse_pc.ply`, as SfM would leave them), measured
under load on the 2-core machine (48 px, 24 views, "tiny" preset with splatfacto's own centre
rate and the scene's known sky colour as background, 300 iterations, 4000 → 11539
Gaussians, 180 s with the scene's generation): exported centres (the 3DGS export, every
Gaussian) lie a median 0.033 scene units from the ground-truth surfaces (p90 0.081; the 691
with opacity > 0.5: median 0.037); PSNR 27.0 dB over every third view (a flat colour:
11.2 dB). Densification (steps 100-250) is where centres leave the surfaces: before it the
median was 0.012.

Why those two settings. The centres: the tiny preset raises the centres' rate tenfold so that
a random cube gathers into a scene within a few hundred steps; seeded Gaussians start on the
surfaces, and at that rate the noise of single-image steps walks them off (median 0.054 after
200 steps); splatfacto's own rate keeps them there. The sky: it is one colour at infinity, so
SfM finds no points there, and with splatfacto's random background the seeded Gaussians must
first grow a shell around the scene to paint 43% of every image; a few hundred steps do not
(the same run with the random background: centres median 0.034, p90 0.091, but 13.2 dB). The
scene's background is known, as a studio backdrop is, so `SplatConfig.background_rgb` draws
it.

From a random start instead (no point file; 32 px, 600 iterations, ~1000 Gaussians, 290 s):
PSNR 21.9 dB, but the centres are not on the surfaces (an earlier tiny preset: median 1.64
scene units over all Gaussians, 0.85 over those with opacity > 0.5): the sky is painted by
Gaussians far from any surface.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edit3d.export.splats import world_gaussians
from edit3d.field import RadianceField, field_from_dataset, get_preset
from edit3d.scene.cameras import CameraView
from edit3d.scene.sample import BACKGROUND_COLOR, SampleScene, make_sample_scene
from edit3d.training import fit

TINY = get_preset("tiny", "splatfacto")
SEEDED_STEPS = 300
RANDOM_STEPS = 600


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2)))


def _view_psnr(field: RadianceField, scene: SampleScene) -> tuple[float, float]:
    """(mean PSNR of every third view rendered from its world pose, of a flat colour)."""
    scores, blank = [], []
    for view in scene.views[::3]:
        world_camera = CameraView("from-blender", view.c2w, view.intrinsics)
        image = scene.image(view.name)
        scores.append(psnr(field.render(world_camera).rgb, image))
        blank.append(psnr(np.full_like(image, image.mean()), image))
    return float(np.mean(scores)), float(np.mean(blank))


@pytest.mark.slow
def test_seeded_splat_base_centres_lie_on_the_surfaces(tmp_path) -> None:
    scene = make_sample_scene(tmp_path / "scene", num_views=24, resolution=48)
    config = dataclasses.replace(
        TINY, means_lr=1.6e-4, means_lr_final=1.6e-6, background_rgb=BACKGROUND_COLOR
    )
    field = field_from_dataset(scene.root, config, seed=0)
    seeds = field.num_gaussians
    fit(field, field.make_targets(field.dataset_images()), SEEDED_STEPS, lr=config.base_lr)
    splats = world_gaussians(field)  # what `edit3d export --kind splats` writes
    distance = scene.surface_distance(splats.means)
    opaque = 1.0 / (1.0 + np.exp(-splats.opacities_logit)) > 0.5
    median, p90 = float(np.median(distance)), float(np.percentile(distance, 90))
    score, flat = _view_psnr(field, scene)
    print(
        f"seeded splatfacto on the sample scene, {SEEDED_STEPS} tiny iterations, {seeds} seeds "
        f"→ {len(distance)} Gaussians: exported centres to the GT surfaces median {median:.4f}, "
        f"p90 {p90:.4f} (opacity > 0.5: {opaque.sum()}, median "
        f"{np.median(distance[opaque]):.4f}); PSNR {score:.2f} dB (flat colour {flat:.2f} dB)"
    )
    assert seeds == 4000 and len(distance) > seeds  # seeded from the file, then densified
    assert median <= 0.05
    assert score > 24.0 and score > flat + 10.0


@pytest.mark.slow
def test_random_start_splat_base_reproduces_the_sample_scene(tmp_path) -> None:
    scene = make_sample_scene(tmp_path / "scene", num_views=24, resolution=32, num_points=0)
    field = field_from_dataset(scene.root, TINY, seed=0)
    assert field.num_gaussians == TINY.num_random
    fit(field, field.make_targets(field.dataset_images()), RANDOM_STEPS, lr=TINY.base_lr)
    score, flat = _view_psnr(field, scene)
    print(
        f"splatfacto sample scene from a random start, {RANDOM_STEPS} tiny iterations, "
        f"{field.num_gaussians} Gaussians: PSNR {score:.2f} dB (flat colour {flat:.2f} dB)"
    )
    assert score > 20.0
    assert score > flat + 8.0
