"""What every export shares: camera rays in the world frame, crop boxes, views to render.

Rays follow the conventions of `edit3d.scene.cameras` and of nerfstudio's renderer: pixel
centres (offset 0.5), the camera looks down -Z with +Y up, row 0 is the top row, and
directions are unit vectors, so ``origin + direction * depth`` is the surface point for a
depth measured along the ray (what `RenderResult.depth` holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edit3d.field.radiance import RadianceField
from edit3d.scene.cameras import CameraView


def camera_rays(view: CameraView, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(origin [3], unit directions [H, W, 3]) in the world frame for a render of that size."""
    k = view.intrinsics.scaled_to(width, height)
    u = (np.arange(width, dtype=np.float64) + 0.5 - k.cx) / k.fx
    v = (np.arange(height, dtype=np.float64) + 0.5 - k.cy) / k.fy
    uu, vv = np.meshgrid(u, v)
    directions_camera = np.stack([uu, -vv, -np.ones_like(uu)], axis=-1)
    directions = directions_camera @ view.c2w[:3, :3].T
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return view.c2w[:3, 3].copy(), directions


def render_size(view: CameraView, long_side: int | None) -> tuple[int, int]:
    """(width, height) of the view, shrunk so its longer side is at most `long_side`."""
    width, height = view.intrinsics.width, view.intrinsics.height
    if long_side is None or max(width, height) <= long_side:
        return width, height
    factor = long_side / max(width, height)
    return max(round(width * factor), 1), max(round(height * factor), 1)


def pick_views(views: Sequence[CameraView], max_views: int | None) -> list[CameraView]:
    """At most `max_views` views, evenly spread over the list (all if None)."""
    views = list(views)
    if not views:
        raise ValueError("views must not be empty")
    if max_views is None or max_views >= len(views):
        return views
    if max_views < 1:
        raise ValueError(f"max_views must be >= 1, got {max_views}")
    indices = np.linspace(0, len(views) - 1, max_views).round().astype(int)
    return [views[i] for i in sorted(set(indices.tolist()))]


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned box in the dataset's world frame."""

    minimum: tuple[float, float, float]
    """Lower corner (x, y, z)."""
    maximum: tuple[float, float, float]
    """Upper corner (x, y, z)."""

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.minimum, float), np.asarray(self.maximum, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(hi > lo):
            raise ValueError(f"crop box needs minimum < maximum per axis, got {lo} and {hi}")

    @property
    def size(self) -> np.ndarray:
        return np.asarray(self.maximum) - np.asarray(self.minimum)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """[N] bool for points [N, 3]."""
        return np.all((points >= self.minimum) & (points <= self.maximum), axis=-1)

    @staticmethod
    def from_values(values: Sequence[float]) -> CropBox:
        """From six numbers: x0 y0 z0 x1 y1 z1."""
        if len(values) != 6:
            raise ValueError(f"crop must be six numbers x0 y0 z0 x1 y1 z1, got {list(values)}")
        return CropBox(tuple(values[:3]), tuple(values[3:]))  # type: ignore[arg-type]


def _bounds_to_box(bounds: object) -> CropBox | None:
    """Accepts a CropBox, an object with min/max-like attributes, or a [2, 3] array."""
    if bounds is None:
        return None
    if isinstance(bounds, CropBox):
        return bounds
    if isinstance(bounds, (np.ndarray, list, tuple)):
        array = np.asarray(bounds, dtype=float)
        if array.shape == (2, 3):
            return CropBox(tuple(array[0]), tuple(array[1]))
    for lo_name, hi_name in (("minimum", "maximum"), ("min", "max"), ("lower", "upper")):
        if hasattr(bounds, lo_name) and hasattr(bounds, hi_name):
            lo, hi = getattr(bounds, lo_name), getattr(bounds, hi_name)
            if not callable(lo):
                return CropBox(tuple(np.asarray(lo, float)), tuple(np.asarray(hi, float)))
    raise ValueError(f"scene bounds must be a box or a [2, 3] array, got {bounds!r}")


def default_crop(field: RadianceField) -> CropBox:
    """The field's scene bounds in the world frame, else a box around its cameras.

    Captures orbit the subject, so the cameras' bounding box (grown by 10 % of its size)
    holds it; a field that knows its own bounds (the dataparser's scene box) is preferred.
    """
    bounds_method = getattr(field, "scene_bounds_world", None)
    if callable(bounds_method):
        box = _bounds_to_box(bounds_method())
        if box is not None:
            return box
    positions = np.stack([view.position for view in field.views])
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    margin = 0.1 * np.maximum(hi - lo, 1e-3).max()
    return CropBox(tuple(lo - margin), tuple(hi + margin))
