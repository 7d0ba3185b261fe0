"""Exports of a field trained on the sample scene land on the true surfaces, in WORLD coordinates.

The sample scene's world frame is off-centre and not unit-scaled (around (2, -1, 0)), and the
field trains in nerfstudio's re-oriented, re-scaled frame: a forgotten or doubled dataparser
transform puts every point metres away from the truth. A tiny nerfacto is trained once per
session (600 iterations on 36 views at 48 px, ~1 min on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edit3d.export.files import write_geometry
from edit3d.export.mesh import MeshConfig, export_mesh
from edit3d.export.ply import read_ply
from edit3d.export.pointcloud import PointCloudConfig, export_point_cloud
from edit3d.export.sampling import CropBox
from edit3d.field import RadianceField, field_from_checkpoint, field_from_dataset, get_preset
from edit3d.scene.sample import GROUND_RADIUS, SCENE_ORIGIN, SampleScene, make_sample_scene
from edit3d.training import fit

BASE_STEPS = 600


@pytest.fixture(scope="session")
def sample_base(tmp_path_factory) -> tuple[SampleScene, RadianceField]:
    cache = tmp_path_factory.getbasetemp() / "refine-sample-base"
    checkpoint = cache / "base.pt"
    if (cache / "scene" / "objects.json").is_file() and checkpoint.is_file():
        return SampleScene.load(cache / "scene"), field_from_checkpoint(checkpoint)
    scene = make_sample_scene(cache / "scene", num_views=36, resolution=48, seed=0)
    config = dataclasses.replace(get_preset("tiny"))
    torch.manual_seed(0)  # nerfacto's samplers draw from the global generator
    field = field_from_dataset(scene.root, config, "cpu", seed=0)
    fit(field, field.make_targets(field.dataset_images()), BASE_STEPS, lr=config.base_lr)
    field.save_checkpoint(checkpoint)
    return scene, field


def _scene_crop() -> CropBox:
    """The ground plate and what stands on it (the sky is not a surface to export)."""
    origin, r = np.asarray(SCENE_ORIGIN), GROUND_RADIUS
    below, above = np.array([r, r, 0.05]), np.array([r, r, 2.0])
    return CropBox(tuple(origin - below), tuple(origin + above))


def _over_plate(points: np.ndarray) -> np.ndarray:
    """Points above the round ground plate: where the truth defines every surface. Past its
    rim the field extends the ground into what was sky in the images (nothing to compare)."""
    radial = np.linalg.norm(points[:, :2] - np.asarray(SCENE_ORIGIN)[:2], axis=1)
    return radial < GROUND_RADIUS - 0.1


def _distance_report(
    scene: SampleScene, points: np.ndarray, what: str, min_plate_fraction: float
) -> tuple[float, float]:
    distance = scene.surface_distance(points)
    plate = _over_plate(points)
    median, p90 = np.median(distance[plate]), np.percentile(distance[plate], 90)
    print(
        f"{what} to GT surface (world units), over the plate ({plate.mean():.0%} of them): "
        f"median {median:.4f}, p90 {p90:.4f}; all: median {np.median(distance):.4f}, "
        f"p90 {np.percentile(distance, 90):.4f}"
    )
    assert plate.mean() > min_plate_fraction and np.median(distance) < 0.05
    return median, p90


def _chroma_angle_deg(colors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Angle between RGB directions: insensitive to the scene's Lambertian shading factor."""
    a = colors / np.maximum(np.linalg.norm(colors, axis=-1, keepdims=True), 1e-6)
    b = reference / np.maximum(np.linalg.norm(reference, axis=-1, keepdims=True), 1e-6)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1, 1)))


def test_field_frame_is_not_the_world_frame(sample_base):
    _, field = sample_base
    assert not np.allclose(field.world_to_field, np.eye(4), atol=1e-2)


def test_point_cloud_lies_on_ground_truth_surfaces_with_their_colours(sample_base, tmp_path):
    scene, field = sample_base
    cloud = export_point_cloud(field, PointCloudConfig(num_points=8000, seed=0), crop=_scene_crop())
    assert 7000 < len(cloud) <= 8000  # the budget, less isolated floaters
    median, p90 = _distance_report(scene, cloud.points, "point cloud", 0.8)
    assert median < 0.04 and p90 < 0.12

    objects = scene.object_at(cloud.points, tol=0.04)
    on_object = np.array([o not in (None, "ground") for o in objects])
    assert on_object.sum() > 300
    reference = np.stack(
        [scene.object_color(o) for o, k in zip(objects, on_object, strict=True) if k]
    )
    angle = _chroma_angle_deg(cloud.colors[on_object], reference)
    # the same colours against the colours of the wrong objects: the control
    shuffled = np.random.default_rng(0).permutation(reference)
    control = np.median(_chroma_angle_deg(cloud.colors[on_object], shuffled))
    print(
        f"colour vs GT object colour (chroma angle, degrees): median {np.median(angle):.1f} "
        f"(against shuffled objects: {control:.1f})"
    )
    # A 600-iteration tiny field renders some objects desaturated (the blue sphere comes out
    # grey-blue in its own renders), so the bound is loose; wrong objects score ~29 degrees.
    assert np.median(angle) < 15.0 and control > 22.0
    for object_id in ("ground", "red_box", "yellow_cylinder"):
        own = np.array([o == object_id for o in objects])
        own_angle = _chroma_angle_deg(cloud.colors[own], scene.object_color(object_id)[None])
        assert np.median(own_angle) < 8.0, object_id

    # normals face the way the GT surfaces do (up on the ground plate)
    ground = np.array([o == "ground" for o in objects])
    assert np.median(cloud.normals[ground][:, 2]) > 0.8

    ply = read_ply(write_geometry(tmp_path / "cloud.ply", cloud))["vertex"]
    np.testing.assert_array_equal(np.stack([ply[a] for a in "xyz"], 1), cloud.points)


def test_mesh_lies_on_ground_truth_surfaces(sample_base):
    scene, field = sample_base
    mesh = export_mesh(field, MeshConfig(resolution=48, max_views=18), crop=_scene_crop())
    assert len(mesh.faces) > 500
    median, p90 = _distance_report(
        scene,
        mesh.vertices,
        f"mesh (voxel {3.2 / 48:.3f})",
        0.6,  # its ground fills the box
    )
    assert median < 0.04 and p90 < 0.12
