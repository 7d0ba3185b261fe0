"""A tiny analytic scene for tests and benchmarks of the field and of editing turns.

Two spheres ("sphere_a", "sphere_b") over a checkered floor, seen by a ring of cameras;
rendered by exact ray casting, so per-view object masks are ground truth. Written in the
nerfstudio layout (transforms.json + images/), like any captured dataset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    true_views: list[CameraView] = field(default_factory=list)
    """The poses the images were taken from (differ from `views` when poses were perturbed)."""

    def object_mask(self, object_id: str, view: CameraView) -> np.ndarray:
        """bool [H, W]: pixels whose first hit is `object_id`, at the view's resolution."""
        return _cast(self._scene_view(view))[1] == list(SPHERES).index(object_id) + 1

    def image(self, view: CameraView) -> np.ndarray:
        """The ideal pinhole image of a world-frame camera."""
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
    distortion: Mapping[str, float] | None = None,
    pose_noise: tuple[float, float] | None = None,
    camera_model: str = "OPENCV",
) -> TinyScene:
    """Write the scene as a nerfstudio dataset under out_dir.

    `world_from_scene` (a [4, 4] rotation · uniform scale + translation) places the scene in
    an arbitrary dataset world frame, so frame handling is exercised with a non-trivial
    dataparser transform. `distortion` (OpenCV k1, k2, p1, p2) makes the images those of a
    distorting lens, written to transforms.json as nerfstudio reads it. `pose_noise`
    (degrees, world units) writes each pose off by a seeded rotation of that angle and a
    shift of that length, while the images stay those of the true poses.
    """
    from PIL import Image

    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    world = (
        np.eye(4) if world_from_scene is None else np.asarray(world_from_scene, dtype=np.float64)
    )
    scene_views = ring_views(num_views, resolution)
    views, frames = [], []
    rng = np.random.default_rng(7)
    true_views = []
    for view in scene_views:
        rgb = _cast(view, distortion)[0]
        Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(root / view.name)
        c2w = world @ view.c2w
        c2w[:3, :3] /= np.linalg.norm(c2w[:3, :3], axis=0)  # a camera rotation stays orthonormal
        true_views.append(CameraView(view.name, c2w, view.intrinsics))
        if pose_noise is not None:
            c2w = _perturbed(c2w, *pose_noise, rng)
        views.append(CameraView(view.name, c2w, view.intrinsics))
        frames.append({"file_path": view.name, "transform_matrix": c2w.tolist()})
    intr = views[0].intrinsics
    meta: dict[str, Any] = {
        "camera_model": camera_model,
        "fl_x": intr.fx, "fl_y": intr.fy, "cx": intr.cx, "cy": intr.cy,
        "w": intr.width, "h": intr.height,
        **dict(distortion or {}),
        "frames": frames,
    }  # fmt: skip
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return TinyScene(root, views, world, true_views)


def _perturbed(
    c2w: np.ndarray, degrees: float, shift: float, rng: np.random.Generator
) -> np.ndarray:
    """The pose turned by `degrees` about a random axis through its centre, moved `shift`."""
    axis = rng.normal(size=3)
    direction = rng.normal(size=3)
    turn = similarity(degrees, tuple(axis), 1.0, (0.0, 0.0, 0.0))[:3, :3]
    out = c2w.copy()
    out[:3, :3] = turn @ c2w[:3, :3]
    out[:3, 3] += shift * direction / np.linalg.norm(direction)
    return out


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


def _cast(
    view: CameraView, distortion: Mapping[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb [H,W,3], hit id [H,W]: 0 floor/sky, k for the k-th sphere, hit distance [H,W])."""
    intr = view.intrinsics
    ys, xs = np.mgrid[0 : intr.height, 0 : intr.width] + 0.5
    u, v = (xs - intr.cx) / intr.fx, (ys - intr.cy) / intr.fy
    if distortion:
        u, v = _undistorted(xs, ys, intr, distortion)
    dirs_cam = np.stack([u, -v, -np.ones_like(xs)], axis=-1)
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


def _undistorted(
    xs: np.ndarray, ys: np.ndarray, intr: Intrinsics, distortion: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pinhole coordinates (x right, y down) of distorted pixel centres (OpenCV's
    own iterative inverse, independent of nerfstudio's)."""
    import cv2

    k = np.array([[intr.fx, 0, intr.cx], [0, intr.fy, intr.cy], [0, 0, 1]], dtype=np.float64)
    coeffs = np.array([distortion.get(n, 0.0) for n in ("k1", "k2", "p1", "p2")])
    points = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2).astype(np.float64)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    out = cv2.undistortPointsIter(points, k, coeffs, None, None, criteria).reshape((*xs.shape, 2))
    return out[..., 0], out[..., 1]


def cached_tiny_base(
    cache_dir: str | Path,
    *,
    steps: int = 600,
    num_views: int = 24,
    resolution: int = 32,
    config: Any = None,
    **scene: Any,
) -> tuple[TinyScene, Path]:
    """The tiny scene and a field trained on it (default: "tiny" preset), made once per cache
    folder; `scene` goes to `make_tiny_scene` (distortion, pose noise).

    Test modules that need a trained base share one by passing the same folder (e.g. under
    pytest's session base temp), so the base is trained once per test session.
    """
    from edit3d.field.registry import field_from_dataset, get_preset
    from edit3d.training import fit

    cache = Path(cache_dir)
    root = cache / "scene"
    if (root / "transforms.json").is_file() and not scene:
        scene_ = TinyScene(root, ring_views(num_views, resolution), np.eye(4))
    else:
        scene_ = make_tiny_scene(root, num_views=num_views, resolution=resolution, **scene)
    checkpoint = cache / "base.pt"
    if not checkpoint.is_file():
        trained = field_from_dataset(root, config or get_preset("tiny"))
        images = trained.make_targets(trained.dataset_images())
        fit(trained, images, steps, lr=trained.config.base_lr)
        trained.save_checkpoint(checkpoint)
    return scene_, checkpoint


def write_colmap_text_model(
    scene_views: list[CameraView],
    model_dir: Path,
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """The views as a COLMAP sparse text model (OpenCV camera axes, world-to-camera
    quaternions), with `points` (world positions [N, 3], uint8 colours [N, 3]) as its
    points3D (none if not given)."""
    from nerfstudio.data.utils import colmap_parsing_utils as colmap

    intr = scene_views[0].intrinsics
    cameras = {1: colmap.Camera(1, "PINHOLE", intr.width, intr.height,
                                np.array([intr.fx, intr.fy, intr.cx, intr.cy]))}  # fmt: skip
    images = {}
    for i, view in enumerate(scene_views, start=1):
        c2w = view.c2w.copy()
        c2w[:3, 1:3] *= -1  # OpenGL → OpenCV camera axes
        w2c = np.linalg.inv(c2w)
        images[i] = colmap.Image(
            i, colmap.rotmat2qvec(w2c[:3, :3]), w2c[:3, 3], 1, Path(view.name).name,
            np.zeros((0, 2)), np.zeros(0, dtype=int),
        )  # fmt: skip
    model_dir.mkdir(parents=True)
    colmap.write_cameras_text(cameras, model_dir / "cameras.txt")
    colmap.write_images_text(images, model_dir / "images.txt")
    xyz, rgb = points if points is not None else (np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    points3d = {
        i: colmap.Point3D(i, np.asarray(p, np.float64), np.asarray(c), 0.5, np.array([1]),
                          np.array([0]))
        for i, (p, c) in enumerate(zip(xyz, rgb, strict=True), start=1)
    }  # fmt: skip
    colmap.write_points3D_text(points3d, model_dir / "points3D.txt")
