"""Point clouds sampled from a field, in the dataset's world frame (as nerfstudio's exporter).

Each chosen training camera is rendered; rays whose accumulation exceeds a threshold give
a point ``origin + direction * depth`` with the rendered colour. The field renders world-
frame cameras and returns depth along the ray in world units, so no dataparser transform
is involved here. Normals come from the depth map: the cross product of the point map's
screen-space derivatives, facing the camera; where a neighbour is missing or across a
depth discontinuity the normal falls back to the reversed view direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edit3d.export.geometry import PointCloud
from edit3d.export.sampling import (
    CropBox,
    camera_rays,
    default_crop,
    pick_views,
    render_size,
)
from edit3d.field.radiance import RadianceField, as_new_camera
from edit3d.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from edit3d.scene.cameras import CameraView


@dataclass(frozen=True)
class PointCloudConfig:
    """How to sample a point cloud from a field."""

    num_points: int = 1_000_000
    """Point budget: a seeded random subset is kept when more rays hit the scene."""
    accumulation_threshold: float = 0.5
    """Rays with less accumulated opacity than this hit nothing and give no point."""
    max_views: int | None = None
    """Render at most this many training views, spread evenly (None: all)."""
    render_long_side: int | None = None
    """Render each view with its longer side at most this many pixels (None: dataset size)."""
    normals: bool = True
    """Estimate normals from the rendered depth maps."""
    depth_jump: float = 0.05
    """Relative depth change between neighbours above which no normal is estimated."""
    seed: int = 0
    """Seed of the point subsampling."""
    remove_outliers: bool = True
    """Drop isolated points (floaters), as nerfstudio's exporter does."""
    outlier_neighbors: int = 20
    """Neighbours whose mean distance rates a point."""
    outlier_std_ratio: float = 2.0
    """Points whose mean neighbour distance exceeds the cloud's mean by this many standard
    deviations are dropped."""

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if not 0.0 <= self.accumulation_threshold < 1.0:
            raise ValueError(
                f"accumulation_threshold must be in [0, 1), got {self.accumulation_threshold}"
            )


def _screen_derivative(
    points: np.ndarray, depth: np.ndarray, valid: np.ndarray, axis: int, jump: float
) -> tuple[np.ndarray, np.ndarray]:
    """dP along an image axis: central where both neighbours continue the surface, else the
    one-sided difference on the side that does. Returns (derivative, defined)."""

    def neighbour(shift: int) -> tuple[np.ndarray, np.ndarray]:
        other_points = np.roll(points, shift, axis=axis)
        other_depth = np.roll(depth, shift, axis=axis)
        ok = np.roll(valid, shift, axis=axis) & valid
        ok &= np.abs(other_depth - depth) <= jump * np.maximum(depth, 1e-6)
        edge = [slice(None)] * 2
        edge[axis] = slice(0, 1) if shift == 1 else slice(-1, None)
        ok[tuple(edge)] = False  # np.roll wraps around the border
        return other_points, ok

    after, after_ok = neighbour(-1)
    before, before_ok = neighbour(1)
    central = (after - before) / 2.0
    derivative = np.where(
        (after_ok & before_ok)[..., None],
        central,
        np.where(after_ok[..., None], after - points, points - before),
    )
    return derivative, after_ok | before_ok


def depth_normals(
    points: np.ndarray, directions: np.ndarray, depth: np.ndarray, valid: np.ndarray, jump: float
) -> np.ndarray:
    """[H, W, 3] unit normals of a point map [H, W, 3] (world), facing the camera."""
    du, du_ok = _screen_derivative(points, depth, valid, axis=1, jump=jump)
    dv, dv_ok = _screen_derivative(points, depth, valid, axis=0, jump=jump)
    normals = np.cross(dv, du)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    ok = du_ok & dv_ok & (length[..., 0] > 1e-12)
    normals = np.where(ok[..., None], normals / np.maximum(length, 1e-12), -directions)
    facing_away = np.sum(normals * directions, axis=-1) > 0
    normals[facing_away] *= -1
    return normals


def _view_points(
    field: RadianceField, view: CameraView, config: PointCloudConfig, crop: CropBox
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width, height = render_size(view, config.render_long_side)
    result = field.render(as_new_camera(view), width=width, height=height)
    depth = np.asarray(result.depth, dtype=np.float64).reshape(height, width)
    accumulation = np.asarray(result.accumulation, dtype=np.float64).reshape(height, width)
    rgb = np.asarray(result.rgb, dtype=np.float32).reshape(height, width, 3)
    origin, directions = camera_rays(view, width, height)
    points = origin + directions * depth[..., None]
    valid = (accumulation > config.accumulation_threshold) & np.isfinite(depth) & (depth > 0)
    if config.normals:
        normals = depth_normals(points, directions, depth, valid, config.depth_jump)
    else:
        normals = np.zeros_like(points)
    keep = valid & crop.contains(points)
    return points[keep], rgb[keep], normals[keep]


def export_point_cloud(
    field: RadianceField,
    config: PointCloudConfig | None = None,
    *,
    views: Sequence[CameraView] | None = None,
    crop: CropBox | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> PointCloud:
    """Samples the field's surfaces into a world-frame point cloud (see module docstring).

    views: cameras to render (default: the field's training views); crop: keep points in
    this world box (default: `default_crop(field)`).
    """
    config = config or PointCloudConfig()
    crop = crop or default_crop(field)
    chosen = pick_views(views if views is not None else field.views, config.max_views)
    rng = np.random.default_rng(config.seed)
    # Keep a bit more than a fair share per view so the final subsample stays uniform.
    per_view = int(np.ceil(2.0 * config.num_points / len(chosen)))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for index, view in enumerate(chosen):
        if cancel is not None:
            cancel.raise_if_cancelled()
        points, colors, normals = _view_points(field, view, config, crop)
        if len(points) > per_view:
            pick = rng.choice(len(points), per_view, replace=False)
            points, colors, normals = points[pick], colors[pick], normals[pick]
        parts.append((points, colors, normals))
        progress(ProgressEvent("export", index + 1, len(chosen), message=f"rendered {view.name}"))
    points = np.concatenate([p[0] for p in parts])
    colors = np.concatenate([p[1] for p in parts])
    normals = np.concatenate([p[2] for p in parts])
    if len(points) > config.num_points:
        pick = np.sort(rng.choice(len(points), config.num_points, replace=False))
        points, colors, normals = points[pick], colors[pick], normals[pick]
    if config.remove_outliers:
        keep = statistical_inliers(points, config.outlier_neighbors, config.outlier_std_ratio)
        points, colors, normals = points[keep], colors[keep], normals[keep]
    return PointCloud(points, colors, normals if config.normals else None)


def statistical_inliers(points: np.ndarray, neighbors: int, std_ratio: float) -> np.ndarray:
    """[N] bool: points whose mean distance to their `neighbors` nearest is within
    mean + std_ratio * std of all such distances (statistical outlier removal)."""
    from scipy.spatial import cKDTree

    if len(points) <= neighbors:
        return np.ones(len(points), dtype=bool)
    distances, _ = cKDTree(points).query(points, k=neighbors + 1)
    mean_distance = distances[:, 1:].mean(axis=1)
    return mean_distance <= mean_distance.mean() + std_ratio * mean_distance.std()
