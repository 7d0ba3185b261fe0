"""A tiny analytic scene for tests and benchmarks of the field and of editing turns.

Two spheres ("sphere_a", "sphere_b") over a checkered floor, seen by a ring of cameras;
rendered by exact ray casting, so per-view object masks are ground truth. Written in the
nerfstudio layout (transforms.json + images/), like any captured dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edit3d.scene.cameras import CameraView, Intrinsics

SPHERES: dict[str, tuple[tuple[float, float, float], float, tuple[float, float, float]]] = {
    "sphere_a": ((-0.55, 0.0, 0.45), 0.45, (0.85, 0.80, 0.30)),
    "sphere_b": ((0.55, 0.0, 0.45), 0.45, (0.30, 0.70, 0.80)),
}
"""object id → (centre, radius, albedo); the floor is z = 0."""


@dataclass
class TinyScene:
    """The written dataset and its ground truth."""

    root: Path
    views: list[CameraView]
    """Views in the dataset's world frame (as written to transforms.json)."""
    world_from_scene: np.ndarray
    """[4, 4] similarity taking the scene's modelling frame to the dataset's world frame."""

    def object_mask(self, object_id: str, view: CameraView) -> np.ndarray:
        """bool [H, W]: pixels whose first hit is `object_id`, at the view's resolution."""
        return _cast(self._scene_view(view))[1] == list(SPHERES).index(object_id) + 1

    def image(self, view: CameraView) -> np.ndarray:
        return _cast(self._scene_view(view))[0]

    def depth(self, view: CameraView) -> np.ndarray:
        """float [H, W]: exact distance along each pixel's ray to the first hit, world units."""
        return _cast(self._scene_view(view))[2] * self.world_scale

    def _scene_view(self, view: CameraView) -> CameraView:
        """The view in the scene's own frame (undoing the dataset's world transform)."""
        c2w = np.linalg.inv(self.world_from_scene) @ view.c2w
        c2w[:3, :3] /= np.linalg.norm(c2w[:3, :3], axis=0)
        return CameraView(view.name, c2w, view.intrinsics)

    @property
    def world_scale(self) -> float:
        return float(np.cbrt(np.linalg.det(self.world_from_scene[:3, :3])))


def ring_views(num_views: int, resolution: int, radius: float = 3.2) -> list[CameraView]:
    """Cameras on two rings around the origin looking at (0, 0, 0.3), +Z up."""
    views = []
    focal = 0.9 * resolution
    intr = Intrinsics(focal, focal, resolution / 2, resolution / 2, resolution, resolution)
    for i in range(num_views):
        azimuth = 2 * np.pi * i / num_views
        elevation = np.radians(25.0 if i % 2 == 0 else 45.0)
        eye = radius * np.array(
            [
                np.cos(azimuth) * np.cos(elevation),
                np.sin(azimuth) * np.cos(elevation),
                np.sin(elevation),
            ]
        )
        views.append(
            CameraView(f"images/frame_{i:05d}.png", _look_at(eye, np.array([0, 0, 0.3])), intr)
        )
    return views


def make_tiny_scene(
    out_dir: str | Path,
    *,
    num_views: int = 24,
    resolution: int = 32,
    world_from_scene: np.ndarray | None = None,
) -> TinyScene:
    """Write the scene as a nerfstudio dataset under out_dir.

    `world_from_scene` (a [4, 4] rotation · uniform scale + translation) places the scene in
    an arbitrary dataset world frame, so frame handling is exercised with a non-trivial
    dataparser transform.
    """
    from PIL import Image

    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    world = (
        np.eye(4) if world_from_scene is None else np.asarray(world_from_scene, dtype=np.float64)
    )
    scene_views = ring_views(num_views, resolution)
    views, frames = [], []
    for view in scene_views:
        rgb = _cast(view)[0]
        Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(root / view.name)
        c2w = world @ view.c2w
        c2w[:3, :3] /= np.linalg.norm(c2w[:3, :3], axis=0)  # a camera rotation stays orthonormal
        views.append(CameraView(view.name, c2w, view.intrinsics))
        frames.append({"file_path": view.name, "transform_matrix": c2w.tolist()})
    intr = views[0].intrinsics
    meta = {
        "camera_model": "OPENCV",
        "fl_x": intr.fx, "fl_y": intr.fy, "cx": intr.cx, "cy": intr.cy,
        "w": intr.width, "h": intr.height,
        "frames": frames,
    }  # fmt: skip
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return TinyScene(root, views, world)


def similarity(
    angle_deg: float,
    axis: tuple[float, float, float],
    scale: float,
    shift: tuple[float, float, float],
) -> np.ndarray:
    """[4, 4] rotation about `axis` by `angle_deg`, uniform `scale`, then translation `shift`."""
    axis_v = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    angle = np.radians(angle_deg)
    k = np.array(
        [[0, -axis_v[2], axis_v[1]], [axis_v[2], 0, -axis_v[0]], [-axis_v[1], axis_v[0], 0]]
    )
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    out = np.eye(4)
    out[:3, :3] = scale * rot
    out[:3, 3] = shift
    return out


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(np.array([0.0, 0.0, 1.0]), back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w


def _cast(view: CameraView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb [H,W,3], hit id [H,W]: 0 floor/sky, k for the k-th sphere, hit distance [H,W])."""
    intr = view.intrinsics
    ys, xs = np.mgrid[0 : intr.height, 0 : intr.width] + 0.5
    dirs_cam = np.stack(
        [(xs - intr.cx) / intr.fx, -(ys - intr.cy) / intr.fy, -np.ones_like(xs)], axis=-1
    )
    dirs = dirs_cam @ view.c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = view.c2w[:3, 3]
    light = np.array([0.4, -0.3, 0.85]) / np.linalg.norm([0.4, -0.3, 0.85])
    best_t = np.full(xs.shape, np.inf)
    ids = np.zeros(xs.shape, dtype=np.int64)
    rgb = np.empty((*xs.shape, 3))
    sky = 0.75 + 0.2 * dirs[..., 2:3]
    rgb[:] = sky * np.array([0.85, 0.9, 1.0])
    t_floor = np.where(dirs[..., 2] < -1e-6, -origin[2] / np.minimum(dirs[..., 2], -1e-6), np.inf)
    hit_floor = np.isfinite(t_floor)
    points = origin + dirs * np.where(hit_floor, t_floor, 0.0)[..., None]
    checker = (np.floor(points[..., 0] * 2) + np.floor(points[..., 1] * 2)) % 2
    floor_rgb = (0.35 + 0.3 * checker)[..., None] * np.array([1.0, 0.95, 0.9])
    rgb[hit_floor] = floor_rgb[hit_floor]
    best_t[hit_floor] = t_floor[hit_floor]
    for k, (centre, radius, albedo) in enumerate(SPHERES.values(), start=1):
        oc = origin - np.asarray(centre)
        b = dirs @ oc
        disc = b**2 - (oc @ oc - radius**2)
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        hit = (disc > 0) & (t > 0) & (t < best_t)
        normal = (origin + dirs * t[..., None] - np.asarray(centre)) / radius
        shade = 0.35 + 0.65 * np.clip(normal @ light, 0.0, 1.0)
        rgb[hit] = (shade[..., None] * np.asarray(albedo))[hit]
        best_t[hit] = t[hit]
        ids[hit] = k
    return rgb.astype(np.float32).clip(0, 1), ids, best_t


def cached_tiny_base(
    cache_dir: str | Path, *, steps: int = 600, num_views: int = 24, resolution: int = 32
) -> tuple[TinyScene, Path]:
    """The tiny scene and a "tiny"-preset field trained on it, made once per cache folder.

    Test modules that need a trained base share one by passing the same folder (e.g. under
    pytest's session base temp), so the base is trained once per test session.
    """
    from edit3d.field.registry import field_from_dataset, get_preset
    from edit3d.training import fit

    cache = Path(cache_dir)
    root = cache / "scene"
    if (root / "transforms.json").is_file():
        scene = TinyScene(root, ring_views(num_views, resolution), np.eye(4))
    else:
        scene = make_tiny_scene(root, num_views=num_views, resolution=resolution)
    checkpoint = cache / "base.pt"
    if not checkpoint.is_file():
        field = field_from_dataset(root, get_preset("tiny"))
        fit(field, field.make_targets(field.dataset_images()), steps, lr=field.config.base_lr)
        field.save_checkpoint(checkpoint)
    return scene, checkpoint
