"""Renders honour what training honours: lens distortion, pose correction, camera model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edit3d.field import RadianceField, field_from_checkpoint, field_from_dataset, get_preset
from edit3d.field.radiance import as_new_camera
from edit3d.field.testing import cached_tiny_base, make_tiny_scene

DISTORTION = {"k1": -0.25, "k2": 0.08, "p1": 0.004, "p2": -0.003}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2)))


def view_psnrs(field: RadianceField, *, new_camera: bool = False) -> np.ndarray:
    """PSNR of each training view's render against its dataset image (training size)."""
    images = field.dataset_images()
    scores = []
    for view in field.views:
        camera = as_new_camera(view) if new_camera else view
        scores.append(psnr(field.render(camera).rgb, images[view.name]))
    return np.array(scores)


def test_distorted_capture_renders_as_well_as_an_undistorted_one(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """OPENCV k1/k2/p1/p2: renders of training views carry the lens, as their rays did."""
    base_temp = tmp_path_factory.getbasetemp()
    _, plain_checkpoint = cached_tiny_base(base_temp / "core-tiny-base")  # shared, same settings
    _, lens_checkpoint = cached_tiny_base(base_temp / "lens-tiny-base", distortion=DISTORTION)
    undistorted = view_psnrs(field_from_checkpoint(plain_checkpoint)).mean()
    lens_field = field_from_checkpoint(lens_checkpoint)
    distorted = view_psnrs(lens_field).mean()
    pinhole = view_psnrs(lens_field, new_camera=True).mean()  # how every render was made before
    print(
        f"mean PSNR over training views: undistorted scene {undistorted:.2f} dB, distorted "
        f"scene {distorted:.2f} dB, distorted scene rendered pinhole {pinhole:.2f} dB"
    )
    assert distorted >= undistorted - 1.0
    assert pinhole < undistorted - 1.0


def test_learned_pose_correction_is_rendered(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Poses written off by ~2° and 0.04 units: a training view's render with its learned
    correction is closer to its image than the same camera without it."""
    config = dataclasses.replace(
        get_preset("tiny"),
        camera_optimizer="SO3xR3",
        camera_lr=1e-3,
        appearance_embed_dim=0,  # so that only the pose differs between the two renders
    )
    _, checkpoint = cached_tiny_base(
        tmp_path_factory.getbasetemp() / "posed-tiny-base",
        num_views=16,
        config=config,
        pose_noise=(2.0, 0.04),
    )
    field = field_from_checkpoint(checkpoint)
    corrected = view_psnrs(field)
    uncorrected = view_psnrs(field, new_camera=True)
    print(
        f"mean PSNR: with the learned correction {corrected.mean():.2f} dB, without "
        f"{uncorrected.mean():.2f} dB; closer in {int((corrected > uncorrected).sum())} of "
        f"{len(corrected)} views"
    )
    assert corrected.mean() > uncorrected.mean() + 0.3
    assert (corrected > uncorrected).mean() >= 0.75


@pytest.mark.parametrize("camera_model", ["OPENCV_FISHEYE", "EQUIRECTANGULAR"])
def test_cameras_it_cannot_render_are_refused(tmp_path: Path, camera_model: str) -> None:
    scene = make_tiny_scene(tmp_path, num_views=6, resolution=16, camera_model=camera_model)
    with pytest.raises(ValueError, match=r"camera model (FISHEYE|EQUIRECTANGULAR) is not"):
        field_from_dataset(scene.root, get_preset("tiny"))
