"""The super-resolution fine-tune on a tiny field with tiny SR networks (pipeline check)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edit3d.field import RadianceField, field_from_dataset, get_preset
from edit3d.field.testing import make_tiny_scene
from edit3d.models.sr import build_tiny_gfpgan, build_tiny_realesrgan
from edit3d.progress import Cancelled, CancelToken
from edit3d.refine.faces import FaceBox, FixedFaceDetector
from edit3d.refine.finetune import (
    RefineConfig,
    finetune_super_resolution,
    load_targets,
    make_targets,
    save_targets,
)


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    return make_tiny_scene(tmp_path_factory.mktemp("refine-scene"), num_views=6, resolution=32).root


def _field(scene_root) -> RadianceField:
    config = dataclasses.replace(get_preset("tiny"), rays_per_batch=256)
    return field_from_dataset(scene_root, config, "cpu", seed=0)


@pytest.fixture(scope="module")
def networks():
    return build_tiny_realesrgan(seed=0), build_tiny_gfpgan(seed=0)


def _mse_to_targets(field, targets) -> float:
    errors = []
    for view in field.views[::2]:
        target = targets[view.name]
        render = field.render(view, width=target.shape[1], height=target.shape[0]).rgb
        errors.append(np.mean((render - target) ** 2))
    return float(np.mean(errors))


def test_finetune_trains_on_x4_targets_and_reports_progress(scene_root, networks):
    esrgan, gfpgan = networks
    field = _field(scene_root)
    events = []
    detector = FixedFaceDetector([FaceBox(5.0, 4.0, 11.0, 10.0)])
    config = RefineConfig(steps=25, lr=0.01, render_long_side=16)
    targets, faces = make_targets(field, esrgan, config, gfpgan=gfpgan, detector=detector)
    before = _mse_to_targets(field, targets)
    result = finetune_super_resolution(
        field, config, esrgan=esrgan, gfpgan=gfpgan, detector=detector, progress=events.append
    )
    assert faces == len(field.views)  # one injected face per view
    assert result.faces == len(field.views)
    assert result.render_size == (16, 16) and result.target_size == (64, 64)
    assert all(t.shape == (64, 64, 3) for t in result.targets.values())
    assert set(result.targets) == {v.name for v in field.views}
    # the targets are the SR networks' output of the renders, not the dataset images
    np.testing.assert_allclose(result.targets[field.views[0].name], targets[field.views[0].name])
    assert field.step == 25
    upscale = [e for e in events if e.phase == "refine_upscale"]
    train = [e for e in events if e.phase == "refine"]
    assert [e.step for e in upscale] == list(range(1, 7)) and upscale[-1].total == 6
    assert [e.step for e in train] == list(range(1, 26)) and train[-1].total == 25
    assert all(e.loss is not None and np.isfinite(e.loss) for e in train)
    after = _mse_to_targets(field, result.targets)
    print(f"MSE of x4 renders to the x4 targets: {before:.4f} before, {after:.4f} after 25 steps")
    assert after < before
    assert result.models["esrgan"].endswith("(tiny)")


def test_finetune_honours_cancel_between_iterations(scene_root, networks):
    esrgan, _ = networks
    field = _field(scene_root)
    token = CancelToken()

    def cancel_after_three(event):
        if event.phase == "refine" and event.step == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        finetune_super_resolution(
            field,
            RefineConfig(steps=50, faces=False, render_long_side=16),
            esrgan=esrgan,
            progress=cancel_after_three,
            cancel=token,
        )
    assert field.step == 3


def test_saved_targets_resume_without_upscaling(scene_root, networks, tmp_path):
    esrgan, _ = networks
    field = _field(scene_root)
    config = RefineConfig(steps=4, faces=False, target_long_side=48)
    targets, _ = make_targets(field, esrgan, config)
    assert all(t.shape == (48, 48, 3) for t in targets.values())  # x4 of 32 px, capped
    back = load_targets(save_targets(tmp_path / "targets", targets))
    assert set(back) == set(targets)
    for name, image in targets.items():
        np.testing.assert_allclose(back[name], image, atol=0.5 / 255 + 1e-6)

    class Refuses:
        name = "refuses"
        scale = 4

        def upscale(self, image):
            raise AssertionError("resuming must not upscale again")

    result = finetune_super_resolution(
        field,
        config,
        esrgan=Refuses(),
        targets=back,
        done=2,  # type: ignore[arg-type]
    )
    assert field.step == 2 and result.upscale_seconds < 1.0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        RefineConfig(steps=-1)
    with pytest.raises(ValueError, match="scale"):
        RefineConfig(scale=0)
