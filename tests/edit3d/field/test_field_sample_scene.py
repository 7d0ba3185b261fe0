"""The field on the project's sample scene: world-frame cameras reproduce training views."""

from __future__ import annotations

import numpy as np
import pytest

from edit3d.field import RadianceField, field_from_dataset, get_preset
from edit3d.scene.cameras import CameraView
from edit3d.scene.dataset import load_dataset
from edit3d.scene.sample import SampleScene, make_sample_scene
from edit3d.training import fit

STEPS = 400


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[SampleScene, RadianceField]:
    scene = make_sample_scene(
        tmp_path_factory.mktemp("sample") / "scene", num_views=24, resolution=32
    )
    field = field_from_dataset(scene.root, get_preset("tiny"), seed=0)
    fit(field, field.make_targets(field.dataset_images()), STEPS, lr=field.config.base_lr)
    return scene, field


def test_sample_scene_frame_is_nerfstudios(trained: tuple[SampleScene, RadianceField]) -> None:
    scene, field = trained
    dataset = load_dataset(scene.root)
    assert not np.allclose(field.world_to_field, np.eye(4), atol=1e-2)
    cameras = dataset.nerfstudio_cameras()
    for index in (0, 11):
        view = field.views[index]
        np.testing.assert_allclose(
            field.render(view).rgb,
            field.render_nerfstudio_camera(cameras[index : index + 1], view_index=index).rgb,
            atol=1e-4,  # float32 pose arithmetic in a different order
        )


def test_world_cameras_reproduce_training_views(trained: tuple[SampleScene, RadianceField]) -> None:
    scene, field = trained
    scores, blank = [], []
    for view in scene.views[::3]:
        # the camera exactly as the scene (and Blender) holds it, not the field's copy
        world_camera = CameraView("from-blender", view.c2w, view.intrinsics)
        image = scene.image(view.name)
        scores.append(psnr(field.render(world_camera).rgb, image))
        blank.append(psnr(np.full_like(image, image.mean()), image))
    print(f"sample scene, {STEPS} tiny iterations: PSNR {np.mean(scores):.2f} dB "
          f"(flat-colour baseline {np.mean(blank):.2f} dB)")  # fmt: skip
    assert np.mean(scores) > 19.0
    assert np.mean(scores) > np.mean(blank) + 6.0
