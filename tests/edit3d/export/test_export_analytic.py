"""Exports against an exactly known scene: a ray-traced field of two coloured spheres.

The field renders in the world frame (depth along unit rays), like a RadianceField; every
exported point, normal and colour can be checked against the true geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edit3d.export.mesh import MeshConfig, export_mesh
from edit3d.export.pointcloud import PointCloudConfig, export_point_cloud, statistical_inliers
from edit3d.export.sampling import CropBox, camera_rays, default_crop, pick_views
from edit3d.progress import Cancelled, CancelToken
from edit3d.scene.cameras import CameraView, Intrinsics

CENTERS = np.array([[0.3, 0.2, 1.0], [-0.5, -0.1, 0.9]])  # world frame, z up, off-origin
RADII = np.array([0.4, 0.25])
COLORS = np.array([[0.9, 0.2, 0.1], [0.1, 0.3, 0.8]], dtype=np.float32)


@dataclass
class _Render:
    rgb: np.ndarray
    depth: np.ndarray
    accumulation: np.ndarray


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    return c2w


class SphereField:
    """Analytic stand-in for a trained field: exact hits on two spheres."""

    def __init__(self, num_views: int = 12, size: int = 64) -> None:
        k = Intrinsics(
            fx=size * 1.5, fy=size * 1.5, cx=size / 2, cy=size / 2, width=size, height=size
        )
        target = np.array([0.0, 0.0, 1.0])
        self.views = []
        for i in range(num_views):
            angle = 2 * np.pi * i / num_views
            elevation = 0.6 if i % 2 else -0.2
            eye = target + 3.0 * np.array([np.cos(angle), np.sin(angle), elevation])
            self.views.append(CameraView(f"frame_{i:03d}.png", _look_at(eye, target), k))

    def scene_bounds_world(self) -> np.ndarray:
        return np.array([[-1.2, -1.2, 0.2], [1.2, 1.2, 1.8]])

    def render(self, view, *, width=None, height=None):
        width, height = width or view.intrinsics.width, height or view.intrinsics.height
        origin, directions = camera_rays(view, width, height)
        depth = np.full((height, width), np.inf)
        rgb = np.zeros((height, width, 3), np.float32)
        for center, radius, color in zip(CENTERS, RADII, COLORS, strict=True):
            oc = origin - center
            b = directions @ oc
            disc = b**2 - (oc @ oc - radius**2)
            t = -b - np.sqrt(np.maximum(disc, 0))
            hit = (disc > 0) & (t > 0) & (t < depth)
            depth[hit] = t[hit]
            rgb[hit] = color
        accumulation = np.isfinite(depth).astype(np.float32)
        return _Render(rgb, np.where(np.isfinite(depth), depth, 0.0), accumulation)


def _surface_distance(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the nearest sphere surface, which sphere) for points [N, 3]."""
    d = np.linalg.norm(points[:, None] - CENTERS[None], axis=-1) - RADII[None]
    nearest = np.argmin(np.abs(d), axis=1)
    return np.abs(d[np.arange(len(points)), nearest]), nearest


@pytest.fixture(scope="module")
def field():
    return SphereField()


def test_rays_follow_the_opengl_convention():
    k = Intrinsics(10.0, 10.0, 2.0, 2.0, 4, 4)
    origin, directions = camera_rays(CameraView("a.png", np.eye(4), k), 4, 4)
    assert np.allclose(origin, 0)
    assert np.all(directions[..., 2] < 0)  # looks down -Z
    assert directions[0, 0, 1] > 0 and directions[-1, 0, 1] < 0  # row 0 is the top
    assert directions[0, 0, 0] < 0 and directions[0, -1, 0] > 0
    np.testing.assert_allclose(np.linalg.norm(directions, axis=-1), 1.0)


def test_point_cloud_lies_on_the_surfaces_with_their_colours_and_normals(field):
    cloud = export_point_cloud(
        field, PointCloudConfig(num_points=1000, seed=1, remove_outliers=False)
    )
    assert len(cloud) == 1000
    distance, which = _surface_distance(cloud.points)
    assert distance.max() < 1e-6
    np.testing.assert_array_equal(cloud.colors, COLORS[which])
    true_normals = (cloud.points - CENTERS[which]) / RADII[which][:, None]
    cosine = np.sum(cloud.normals * true_normals, axis=1)
    assert np.median(cosine) > 0.999 and np.mean(cosine > 0.9) > 0.98
    assert np.all(cosine > 0)  # always facing outwards/the camera


def test_point_budget_crop_and_seed(field):
    small = export_point_cloud(field, PointCloudConfig(num_points=300, seed=0))
    again = export_point_cloud(field, PointCloudConfig(num_points=300, seed=0))
    np.testing.assert_array_equal(small.points, again.points)
    crop = CropBox((0.0, -1.0, 0.0), (1.0, 1.0, 2.0))
    cropped = export_point_cloud(field, PointCloudConfig(num_points=2000), crop=crop)
    assert np.all(cropped.points[:, 0] >= 0.0)
    _, which = _surface_distance(cropped.points)
    assert np.mean(which == 0) > 0.95  # the sphere at x = -0.5 is (almost) cut away


def test_default_crop_prefers_the_field_bounds(field):
    assert default_crop(field) == CropBox((-1.2, -1.2, 0.2), (1.2, 1.2, 1.8))
    assert len(pick_views(field.views, 5)) == 5


def test_export_reports_progress_and_honours_cancel(field):
    events = []
    export_point_cloud(field, PointCloudConfig(num_points=100, max_views=3), progress=events.append)
    assert [e.step for e in events] == [1, 2, 3] and events[-1].total == 3
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        export_mesh(field, MeshConfig(resolution=16), cancel=token)


def test_tsdf_mesh_matches_the_spheres_in_world_coordinates(field):
    config = MeshConfig(resolution=64)
    mesh = export_mesh(field, config)
    voxel = 2.4 / 64
    assert len(mesh.faces) > 1000
    distance, which = _surface_distance(mesh.vertices)
    assert np.median(distance) < 0.25 * voxel and np.percentile(distance, 99) < voxel
    np.testing.assert_allclose(mesh.colors, COLORS[which], atol=0.05)
    outward = (mesh.vertices - CENTERS[which]) / RADII[which][:, None]
    assert np.median(np.sum(mesh.normals * outward, axis=1)) > 0.95
    # counter-clockwise from outside: every face's geometric normal points away from its sphere
    a, b, c = (mesh.vertices[mesh.faces[:, i]] for i in range(3))
    face_normal = np.cross(b - a, c - a)
    face_center = (a + b + c) / 3
    _, face_sphere = _surface_distance(face_center)
    assert np.mean(np.sum(face_normal * (face_center - CENTERS[face_sphere]), axis=1) > 0) > 0.99


def test_statistical_outlier_removal_drops_isolated_floaters():
    rng = np.random.default_rng(0)
    surface = np.c_[rng.uniform(0, 1, (500, 2)), np.zeros(500)]
    floaters = np.array([[0.5, 0.5, 0.8], [3.0, 0.0, 0.0]])
    keep = statistical_inliers(np.vstack([surface, floaters]), neighbors=20, std_ratio=2.0)
    assert not keep[-2:].any() and keep[:500].mean() > 0.95
