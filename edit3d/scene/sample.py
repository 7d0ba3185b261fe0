"""A deterministic sample scene with exact ground truth, made offline by an analytic ray caster.

A few coloured solids on a round ground plate, and a person-like figure made of parts
(trousers, shirt, head, hair), photographed from an orbit of cameras. It is written as a
nerfstudio dataset (`transforms.json` + `images/`) with, per view, a ground-truth mask of
every object (`masks/<object_id>/<image stem>.png`), the ray depth (`depth/<stem>.npy`) and
the analytic geometry (`objects.json`), so tests can check poses, masks, depths and
exported geometry against the truth. Like a capture run through structure from motion, it
also has sparse points (`sparse_pc.ply`, named by transforms.json's `ply_file_path` as
`ns-process-data` names it): a few thousand seeded points of the surfaces the cameras see,
with the colours the images show there (none in the sky, where SfM finds nothing).

The world frame is Z-up and deliberately neither centred nor unit-scaled (the scene sits
around (2, -1, 0) and the cameras ~3.4 m away), so a pipeline that forgets nerfstudio's
dataparser transform puts things in the wrong place and tests notice.

Shading is Lambertian under one directional light plus ambient, without shadows: every
pixel of an object is its colour times a single factor in [ambient, 1] (the ground has a
two-tone checker on top), which keeps colours recognisable and the scene learnable.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from edit3d.scene.cameras import CameraView, Intrinsics

SCENE_FORMAT = "edit3d-sample-scene"
SCENE_FORMAT_VERSION = 1
BACKGROUND_INDEX = -1
_EPS = 1e-6

# Layout constants (metres, world frame). Jitter from the seed stays well inside the gaps.
SCENE_ORIGIN = (2.0, -1.0, 0.0)
"""Ground point under the middle of the scene."""
LOOK_AT_HEIGHT = 0.55
"""Height above the ground the cameras aim at."""
GROUND_RADIUS = 1.6
ORBIT_DISTANCE = 3.4
FIELD_OF_VIEW_DEG = 45.0
ELEVATION_RANGE_DEG = (18.0, 42.0)
CHECKER_SIZE = 0.5
CHECKER_DARK = 0.82
BACKGROUND_COLOR = (0.78, 0.85, 0.95)
LIGHT_DIRECTION = (0.45, 0.3, 0.84)
AMBIENT = 0.35
SPARSE_POINTS_FILE = "sparse_pc.ply"
"""The scene's sparse point file (transforms.json `ply_file_path`)."""
SPARSE_POINTS = 4000
"""Points in it by default."""


# --- geometry primitives -----------------------------------------------------------------


@dataclass(frozen=True)
class Primitive:
    """One analytic surface: a kind and its JSON-able parameters (world frame)."""

    kind: str
    """"sphere", "cap" (open spherical shell above z_min), "box" (yawed about Z),
    "cylinder" (vertical, capped) or "disc" (horizontal)."""
    params: dict[str, Any]
    """Centre, radius, half extents, ... as listed per kind in `_KINDS`."""

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit along unit rays: t [N] (inf where missed) and normals [N, 3]."""
        return _KINDS[self.kind][0](self.params, origins, dirs)

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance [N] from points [N, 3] to this surface."""
        return _KINDS[self.kind][1](self.params, points)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params}


def _pick_nearest(*candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest valid (finite, > eps) t among candidate arrays, and which candidate gave it."""
    stacked = np.stack([np.where(c > _EPS, c, np.inf) for c in candidates])
    which = np.argmin(stacked, axis=0)
    return np.take_along_axis(stacked, which[None], axis=0)[0], which


def _sphere_roots(center, radius, origins, dirs) -> tuple[np.ndarray, np.ndarray]:
    oc = origins - np.asarray(center)
    b = np.einsum("ij,ij->i", oc, dirs)
    c = np.einsum("ij,ij->i", oc, oc) - radius**2
    disc = b * b - c
    root = np.sqrt(np.where(disc >= 0, disc, 0.0))
    miss = np.where(disc >= 0, 0.0, np.inf)
    return -b - root + miss, -b + root + miss


def _sphere_hit(p: dict, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, _ = _pick_nearest(*_sphere_roots(p["center"], p["radius"], origins, dirs))
    normals = (origins + dirs * np.where(np.isfinite(t), t, 0.0)[:, None] - p["center"])
    return t, normals / p["radius"]


def _sphere_distance(p: dict, points: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.norm(points - np.asarray(p["center"]), axis=1) - p["radius"])


def _cap_hit(p: dict, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    roots = _sphere_roots(p["center"], p["radius"], origins, dirs)
    kept = []
    for t in roots:
        z = origins[:, 2] + dirs[:, 2] * np.where(np.isfinite(t), t, 0.0)
        kept.append(np.where(z >= p["z_min"], t, np.inf))
    t, _ = _pick_nearest(*kept)
    normals = (origins + dirs * np.where(np.isfinite(t), t, 0.0)[:, None] - p["center"])
    return t, normals / p["radius"]


def _cap_distance(p: dict, points: np.ndarray) -> np.ndarray:
    center = np.asarray(p["center"], dtype=np.float64)
    offset = points - center
    on_sphere = np.abs(np.linalg.norm(offset, axis=1) - p["radius"])
    # The radial projection lands on the shell only above z_min; otherwise the rim is nearest.
    norm = np.maximum(np.linalg.norm(offset, axis=1), 1e-12)
    projected_z = center[2] + offset[:, 2] / norm * p["radius"]
    rim_height = p["z_min"] - center[2]
    rim_radius = math.sqrt(max(p["radius"] ** 2 - rim_height**2, 0.0))
    rho = np.linalg.norm(offset[:, :2], axis=1)
    to_rim = np.hypot(rho - rim_radius, points[:, 2] - p["z_min"])
    return np.where(projected_z >= p["z_min"], on_sphere, to_rim)


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _box_hit(p: dict, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rot = _yaw_matrix(p["yaw"])
    half = np.asarray(p["half"], dtype=np.float64)
    local_o = (origins - np.asarray(p["center"])) @ rot
    local_d = dirs @ rot
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / local_d
        t_a, t_b = (-half - local_o) * inv, (half - local_o) * inv
    t_near = np.nanmax(np.minimum(t_a, t_b), axis=1)
    t_far = np.nanmin(np.maximum(t_a, t_b), axis=1)
    hit = t_far >= np.maximum(t_near, _EPS)
    t = np.where(hit, np.where(t_near > _EPS, t_near, t_far), np.inf)
    local_p = local_o + local_d * np.where(hit, t, 0.0)[:, None]
    axis = np.argmax(np.abs(local_p) / half, axis=1)
    local_n = np.zeros_like(local_p)
    rows = np.arange(len(axis))
    local_n[rows, axis] = np.sign(local_p[rows, axis])
    return t, local_n @ rot.T


def _box_distance(p: dict, points: np.ndarray) -> np.ndarray:
    local = (points - np.asarray(p["center"])) @ _yaw_matrix(p["yaw"])
    q = np.abs(local) - np.asarray(p["half"])
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(q.max(axis=1), 0.0)
    return np.abs(outside + inside)


def _cylinder_hit(p: dict, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cx, cy = p["center_xy"]
    r, z0, z1 = p["radius"], p["z0"], p["z1"]
    ox, oy = origins[:, 0] - cx, origins[:, 1] - cy
    dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    a = np.maximum(dx * dx + dy * dy, 1e-18)
    b = ox * dx + oy * dy
    disc = b * b - a * (ox * ox + oy * oy - r * r)
    root = np.sqrt(np.where(disc >= 0, disc, 0.0))
    sides = [np.where(disc >= 0, (-b + sign * root) / a, np.inf) for sign in (-1.0, 1.0)]
    sides = [np.where(_between(origins[:, 2] + dz * _finite(t), z0, z1), t, np.inf) for t in sides]
    caps = []
    for z in (z0, z1):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (z - origins[:, 2]) / dz
        x, y = ox + dx * _finite(t), oy + dy * _finite(t)
        caps.append(np.where(np.isfinite(t) & (x * x + y * y <= r * r), t, np.inf))
    t, which = _pick_nearest(*sides, *caps)
    hit_p = origins + dirs * _finite(t)[:, None]
    side_n = np.stack([(hit_p[:, 0] - cx) / r, (hit_p[:, 1] - cy) / r, np.zeros_like(t)], 1)
    cap_n = np.zeros_like(side_n)
    cap_n[:, 2] = np.where(which == 2, -1.0, 1.0)
    return t, np.where((which < 2)[:, None], side_n, cap_n)


def _cylinder_distance(p: dict, points: np.ndarray) -> np.ndarray:
    cx, cy = p["center_xy"]
    rho = np.hypot(points[:, 0] - cx, points[:, 1] - cy)
    half_height = 0.5 * (p["z1"] - p["z0"])
    d_r = rho - p["radius"]
    d_z = np.abs(points[:, 2] - 0.5 * (p["z0"] + p["z1"])) - half_height
    outside = np.hypot(np.maximum(d_r, 0.0), np.maximum(d_z, 0.0))
    return np.abs(outside + np.minimum(np.maximum(d_r, d_z), 0.0))


def _disc_hit(p: dict, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cx, cy, z = p["center"]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (z - origins[:, 2]) / dirs[:, 2]
    x = origins[:, 0] + dirs[:, 0] * _finite(t) - cx
    y = origins[:, 1] + dirs[:, 1] * _finite(t) - cy
    t = np.where(np.isfinite(t) & (t > _EPS) & (x * x + y * y <= p["radius"] ** 2), t, np.inf)
    normals = np.zeros((len(t), 3))
    normals[:, 2] = 1.0
    return t, normals


def _disc_distance(p: dict, points: np.ndarray) -> np.ndarray:
    cx, cy, z = p["center"]
    rho = np.hypot(points[:, 0] - cx, points[:, 1] - cy)
    return np.hypot(np.maximum(rho - p["radius"], 0.0), points[:, 2] - z)


def _finite(t: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(t), t, 0.0)


def _between(z: np.ndarray, low: float, high: float) -> np.ndarray:
    return (z >= low) & (z <= high)


HitFn = Callable[[dict, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
DistanceFn = Callable[[dict, np.ndarray], np.ndarray]
_KINDS: dict[str, tuple[HitFn, DistanceFn]] = {
    "sphere": (_sphere_hit, _sphere_distance),
    "cap": (_cap_hit, _cap_distance),
    "box": (_box_hit, _box_distance),
    "cylinder": (_cylinder_hit, _cylinder_distance),
    "disc": (_disc_hit, _disc_distance),
}


# --- objects and layout ------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """An object of the sample scene; a group (the person) has parts instead of surfaces."""

    id: str
    """Stable identifier, e.g. "red_box" or "person_head"; masks live under masks/<id>/."""
    name: str
    """What a person would call it ("red box", "shirt"): usable as a text query."""
    color: tuple[float, float, float]
    """Base albedo in [0, 1]; a group's colour is its largest part's."""
    part_of: str | None = None
    """Id of the group this is a part of, or None for a top-level object."""
    primitives: tuple[Primitive, ...] = ()
    """Its analytic surfaces; empty for a group."""

    @property
    def is_group(self) -> bool:
        return not self.primitives

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "color": list(self.color),
            "part_of": self.part_of,
            "primitives": [p.to_json() for p in self.primitives],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SceneObject:
        primitives = tuple(Primitive(p["kind"], p["params"]) for p in data["primitives"])
        for primitive in primitives:
            if primitive.kind not in _KINDS:
                raise ValueError(f"object {data['id']!r}: unknown primitive {primitive.kind!r}")
        return cls(data["id"], data["name"], tuple(data["color"]), data["part_of"], primitives)


def _at(offset_xy: np.ndarray, z: float) -> list[float]:
    return [SCENE_ORIGIN[0] + float(offset_xy[0]), SCENE_ORIGIN[1] + float(offset_xy[1]), z]


def _build_objects(rng: np.random.Generator) -> list[SceneObject]:
    """The layout, with small seeded jitter of positions and orientations."""

    def spot(x: float, y: float) -> np.ndarray:
        return np.array([x, y]) + rng.uniform(-0.08, 0.08, size=2)

    ground = Primitive("disc", {"center": _at(np.zeros(2), 0.0), "radius": GROUND_RADIUS})
    box_xy, sphere_xy, cylinder_xy = spot(0.75, 0.5), spot(-0.7, 0.55), spot(0.65, -0.65)
    box = Primitive(
        "box",
        {
            "center": _at(box_xy, 0.28),
            "half": [0.28, 0.28, 0.28],
            "yaw": math.radians(25.0 + rng.uniform(-15.0, 15.0)),
        },
    )
    sphere = Primitive("sphere", {"center": _at(sphere_xy, 0.33), "radius": 0.33})
    cylinder = Primitive(
        "cylinder",
        {"center_xy": _at(cylinder_xy, 0.0)[:2], "radius": 0.24, "z0": 0.0, "z1": 0.75},
    )
    return [
        SceneObject("ground", "ground", (0.55, 0.55, 0.52), None, (ground,)),
        SceneObject("red_box", "red box", (0.85, 0.15, 0.12), None, (box,)),
        SceneObject("blue_sphere", "blue sphere", (0.15, 0.3, 0.85), None, (sphere,)),
        SceneObject("yellow_cylinder", "yellow cylinder", (0.92, 0.8, 0.15), None, (cylinder,)),
        *_build_person(spot(-0.45, -0.5), rng.uniform(0.0, 2.0 * math.pi)),
    ]


_SHIRT = (0.8, 0.35, 0.7)


def _build_person(base_xy: np.ndarray, yaw: float) -> list[SceneObject]:
    """A standing figure ~1.45 m tall: trousers (two legs), shirt, head and a hair cap."""
    rot = _yaw_matrix(yaw)[:2, :2]
    legs = tuple(
        Primitive(
            "cylinder",
            {
                "center_xy": _at(base_xy + rot @ np.array([side * 0.1, 0.0]), 0.0)[:2],
                "radius": 0.085,
                "z0": 0.0,
                "z1": 0.62,
            },
        )
        for side in (-1.0, 1.0)
    )
    torso = Primitive(
        "box", {"center": _at(base_xy, 0.88), "half": [0.2, 0.12, 0.26], "yaw": float(yaw)}
    )
    head_center = _at(base_xy, 1.14 + 0.15)
    head = Primitive("sphere", {"center": head_center, "radius": 0.15})
    hair = Primitive(
        "cap", {"center": head_center, "radius": 0.158, "z_min": head_center[2] - 0.01}
    )
    return [
        SceneObject("person", "person", _SHIRT, None, ()),
        SceneObject("person_head", "head", (0.9, 0.72, 0.58), "person", (head,)),
        SceneObject("person_hair", "hair", (0.3, 0.18, 0.08), "person", (hair,)),
        SceneObject("person_torso", "shirt", _SHIRT, "person", (torso,)),
        SceneObject("person_legs", "trousers", (0.15, 0.45, 0.2), "person", legs),
    ]


# --- cameras -----------------------------------------------------------------------------


def look_at(eye: np.ndarray, target: np.ndarray, up: Sequence[float] = (0, 0, 1)) -> np.ndarray:
    """OpenGL camera-to-world [4, 4]: the camera at `eye` looks down -Z towards `target`."""
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    right /= np.linalg.norm(right)
    camera_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, camera_up, -forward, eye
    return c2w


def image_name(index: int) -> str:
    """The `file_path` of view `index` in transforms.json (also the view's name)."""
    return f"images/frame_{index:05d}.png"


def _orbit_views(num_views: int, resolution: int, rng: np.random.Generator) -> list[CameraView]:
    focal = 0.5 * resolution / math.tan(math.radians(FIELD_OF_VIEW_DEG) / 2.0)
    center = resolution / 2.0
    intrinsics = Intrinsics(focal, focal, center, center, resolution, resolution)
    start = rng.uniform(0.0, 2.0 * math.pi)
    phase = rng.uniform(0.0, 1.0)
    low, high = ELEVATION_RANGE_DEG
    views = []
    for i in range(num_views):
        azimuth = start + 2.0 * math.pi * i / num_views
        # Golden-ratio steps spread elevations evenly over the range without a pattern.
        elevation = math.radians(low + (high - low) * ((phase + i * 0.618034) % 1.0))
        distance = ORBIT_DISTANCE + rng.uniform(-0.15, 0.15)
        target = np.array([*SCENE_ORIGIN[:2], LOOK_AT_HEIGHT]) + rng.uniform(-0.05, 0.05, 3)
        direction = np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        c2w = look_at(target + distance * direction, target)
        views.append(CameraView(image_name(i), c2w, intrinsics))
    return views


def camera_rays(view: CameraView) -> tuple[np.ndarray, np.ndarray]:
    """World-frame ray origins and unit directions [H*W, 3] through pixel centres, row-major."""
    k = view.intrinsics
    u, v = np.meshgrid(np.arange(k.width) + 0.5, np.arange(k.height) + 0.5)
    camera_dirs = np.stack(
        [(u - k.cx) / k.fx, -(v - k.cy) / k.fy, -np.ones_like(u)], axis=-1
    ).reshape(-1, 3)
    dirs = camera_dirs @ view.c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.broadcast_to(view.c2w[:3, 3], dirs.shape).copy()
    return origins, dirs


# --- the scene ---------------------------------------------------------------------------


class SampleRender(NamedTuple):
    """Ground truth of one view."""

    image: np.ndarray
    """[H, W, 3] float32 in [0, 1], row 0 top (before 8-bit quantisation)."""
    object_index: np.ndarray
    """[H, W] int32 index into `SampleScene.objects` of the leaf object hit, -1 for sky."""
    depth: np.ndarray
    """[H, W] float32 distance along the unit ray, inf for sky."""


@dataclass
class SampleScene:
    """A sample scene on disk plus its analytic truth."""

    root: Path
    """The dataset folder (holds transforms.json)."""
    objects: list[SceneObject]
    """Every object: top-level ones, the "person" group and its parts."""
    views: list[CameraView]
    """Dataset cameras in the world frame, named by their transforms.json file_path."""
    seed: int = 0
    """Seed the layout and cameras were drawn with."""
    _by_id: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._by_id = {obj.id: i for i, obj in enumerate(self.objects)}

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, root: str | Path) -> SampleScene:
        """Open a folder written by `make_sample_scene`."""
        root = Path(root)
        meta = json.loads((root / "objects.json").read_text())
        if meta.get("format") != SCENE_FORMAT:
            raise ValueError(f"root {root} does not hold a sample scene (objects.json format)")
        objects = [SceneObject.from_json(o) for o in meta["objects"]]
        return cls(root, objects, read_transforms(root / "transforms.json"), int(meta["seed"]))

    # --- lookup --------------------------------------------------------------------------

    def get(self, object_id: str) -> SceneObject:
        if object_id not in self._by_id:
            raise ValueError(f"object_id {object_id!r} is not one of {list(self._by_id)}")
        return self.objects[self._by_id[object_id]]

    def parts(self, object_id: str) -> list[str]:
        """Leaf ids that make up `object_id` (itself if it has surfaces)."""
        obj = self.get(object_id)
        if not obj.is_group:
            return [obj.id]
        return [o.id for o in self.objects if o.part_of == object_id]

    def top_level(self, object_id: str) -> str:
        """The top-level object a part belongs to (itself for top-level objects)."""
        return self.get(object_id).part_of or object_id

    def view(self, name: str) -> CameraView:
        """A dataset view by file_path, file name or stem."""
        for view in self.views:
            if name in (view.name, Path(view.name).name, Path(view.name).stem):
                return view
        raise ValueError(f"view name {name!r} is not a view of {self.root}")

    # --- stored data ---------------------------------------------------------------------

    def image(self, name: str) -> np.ndarray:
        """The stored image of a view, float32 [H, W, 3] in [0, 1]."""
        path = self.root / self.view(name).name
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0

    def object_mask(self, object_id: str, name: str) -> np.ndarray:
        """bool [H, W]: pixels where `object_id` (for a group: any of its parts) is seen."""
        self.get(object_id)
        stem = Path(self.view(name).name).stem
        path = self.root / "masks" / object_id / f"{stem}.png"
        return np.asarray(Image.open(path).convert("L")) >= 128

    def depth(self, name: str) -> np.ndarray:
        """float32 [H, W] ground-truth distance along each unit ray (inf where sky)."""
        return np.load(self.root / "depth" / f"{Path(self.view(name).name).stem}.npy")

    # --- analytic truth ------------------------------------------------------------------

    def object_color(self, object_id: str) -> np.ndarray:
        """float32 [3] base colour of an object (a group's: its largest part's)."""
        return np.asarray(self.get(object_id).color, dtype=np.float32)

    def object_distance(self, object_id: str, points_world: np.ndarray) -> np.ndarray:
        """[N] distance from world points [N, 3] to the surface of `object_id` (or its parts)."""
        points = _as_points(points_world)
        primitives = [p for leaf in self.parts(object_id) for p in self.get(leaf).primitives]
        return np.min([p.distance(points) for p in primitives], axis=0)

    def surface_distance(self, points_world: np.ndarray) -> np.ndarray:
        """[N] distance from world points [N, 3] to the nearest surface, ground included."""
        points = _as_points(points_world)
        return np.min([p.distance(points) for _, p in self._leaf_primitives()], axis=0)

    def object_at(self, points_world: np.ndarray, tol: float = 0.02) -> list[str | None]:
        """Leaf object id whose surface is nearest each point, or None if farther than `tol`."""
        if tol < 0:
            raise ValueError(f"tol must be >= 0, got {tol}")
        points = _as_points(points_world)
        leaves = self._leaf_primitives()
        distances = np.stack([p.distance(points) for _, p in leaves])
        nearest = np.argmin(distances, axis=0)
        best = distances[nearest, np.arange(len(points))]
        return [leaves[k][0] if d <= tol else None for k, d in zip(nearest, best, strict=True)]

    def render_view(self, view: CameraView) -> tuple[np.ndarray, np.ndarray]:
        """(image float32 [H, W, 3], object index map int32 [H, W]) for any camera."""
        result = self.trace(view)
        return result.image, result.object_index

    def trace(self, view: CameraView) -> SampleRender:
        """Image, object index map and depth of any camera, from the analytic scene."""
        return _trace(self.objects, view)

    def _leaf_primitives(self) -> list[tuple[str, Primitive]]:
        return [(o.id, p) for o in self.objects for p in o.primitives]


def _as_points(points_world: np.ndarray) -> np.ndarray:
    points = np.asarray(points_world, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points_world must be [N, 3], got shape {points.shape}")
    return points


def _trace(objects: Sequence[SceneObject], view: CameraView) -> SampleRender:
    origins, dirs = camera_rays(view)
    owners, ts, normals = [], [], []
    for index, obj in enumerate(objects):
        for primitive in obj.primitives:
            t, n = primitive.intersect(origins, dirs)
            owners.append(index)
            ts.append(t)
            normals.append(n)
    t_all = np.stack(ts)
    nearest = np.argmin(t_all, axis=0)
    rays = np.arange(len(dirs))
    depth = t_all[nearest, rays]
    hit = np.isfinite(depth)
    object_index = np.where(hit, np.asarray(owners)[nearest], BACKGROUND_INDEX)
    normal = np.stack(normals)[nearest, rays]
    points = origins + dirs * np.where(hit, depth, 0.0)[:, None]
    colors = _shade(objects, object_index, normal, dirs, points)
    k = view.intrinsics
    return SampleRender(
        colors.reshape(k.height, k.width, 3).astype(np.float32),
        object_index.reshape(k.height, k.width).astype(np.int32),
        depth.reshape(k.height, k.width).astype(np.float32),
    )


def _shade(
    objects: Sequence[SceneObject],
    object_index: np.ndarray,
    normal: np.ndarray,
    dirs: np.ndarray,
    points: np.ndarray,
) -> np.ndarray:
    """Lambertian + ambient; normals face the viewer so open shells shade on both sides."""
    normal = np.where((np.einsum("ij,ij->i", normal, dirs) > 0)[:, None], -normal, normal)
    light = np.asarray(LIGHT_DIRECTION) / np.linalg.norm(LIGHT_DIRECTION)
    factor = AMBIENT + (1.0 - AMBIENT) * np.clip(normal @ light, 0.0, 1.0)
    albedo = np.array([o.color for o in objects] + [BACKGROUND_COLOR])[object_index]
    ground = object_index == next(i for i, o in enumerate(objects) if o.id == "ground")
    cells = np.floor((points[:, :2] - np.asarray(SCENE_ORIGIN[:2])) / CHECKER_SIZE).sum(axis=1)
    factor = np.where(ground & (cells % 2 == 1), factor * CHECKER_DARK, factor)
    sky = object_index == BACKGROUND_INDEX
    return np.where(sky[:, None], albedo, albedo * factor[:, None])


# --- nerfstudio files --------------------------------------------------------------------


def transforms_json(
    views: Sequence[CameraView], ply_file_path: str | None = None
) -> dict[str, Any]:
    """A nerfstudio transforms.json for views sharing one pinhole camera (and naming a
    sparse point file, if given)."""
    k = views[0].intrinsics
    points = {"ply_file_path": ply_file_path} if ply_file_path else {}
    return {
        **points,
        "camera_model": "OPENCV",
        "fl_x": k.fx,
        "fl_y": k.fy,
        "cx": k.cx,
        "cy": k.cy,
        "w": k.width,
        "h": k.height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "frames": [
            {"file_path": v.name, "transform_matrix": v.c2w.tolist()} for v in views
        ],
    }


def read_transforms(path: Path) -> list[CameraView]:
    """Views of a single-camera transforms.json, named by file_path as written."""
    data = json.loads(Path(path).read_text())
    k = Intrinsics(data["fl_x"], data["fl_y"], data["cx"], data["cy"], data["w"], data["h"])
    frames = data["frames"]
    return [CameraView(f["file_path"], np.asarray(f["transform_matrix"]), k) for f in frames]


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=False)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _write_view(root: Path, objects: Sequence[SceneObject], view: CameraView) -> SampleRender:
    result = _trace(objects, view)
    stem = Path(view.name).stem
    _write_png(root / view.name, _to_uint8(result.image))
    (root / "depth").mkdir(exist_ok=True)
    np.save(root / "depth" / f"{stem}.npy", result.depth)
    for index, obj in enumerate(objects):
        if obj.is_group:
            members = [i for i, o in enumerate(objects) if o.part_of == obj.id]
            mask = np.isin(result.object_index, members)
        else:
            mask = result.object_index == index
        _write_png(root / "masks" / obj.id / f"{stem}.png", mask.astype(np.uint8) * 255)
    return result


def _seen_surface(view: CameraView, result: SampleRender) -> tuple[np.ndarray, np.ndarray]:
    """World points [M, 3] of the view's pixels that hit a surface, and their colours."""
    origins, dirs = camera_rays(view)
    depth = result.depth.reshape(-1)
    hit = np.isfinite(depth)
    points = origins[hit] + dirs[hit] * depth[hit, None]
    return points, result.image.reshape(-1, 3)[hit]


def _write_sparse_points(
    path: Path, seen: list[tuple[np.ndarray, np.ndarray]], count: int, rng: np.random.Generator
) -> None:
    """`count` of the seen surface points (a seeded draw over every view's pixels, as dense
    where the views see more) as a PLY with 8-bit colours, as SfM leaves them."""
    from edit3d.export.geometry import PointCloud
    from edit3d.export.ply import write_point_cloud_ply

    points = np.concatenate([p for p, _ in seen])
    colours = np.concatenate([c for _, c in seen])
    pick = np.sort(rng.choice(len(points), min(count, len(points)), replace=False))
    write_point_cloud_ply(path, PointCloud(points[pick], colours[pick]))


def _prepare_out_dir(root: Path) -> Path:
    """An empty folder, or an earlier sample scene cleared so no stale view survives."""
    if root.exists() and any(root.iterdir()):
        if not _is_sample_scene(root):
            raise ValueError(f"out_dir {root} is not empty and does not hold a sample scene")
        for sub in ("images", "masks", "depth"):
            if (root / sub).is_dir():
                shutil.rmtree(root / sub)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _is_sample_scene(root: Path) -> bool:
    try:
        return json.loads((root / "objects.json").read_text()).get("format") == SCENE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


MAX_RESOLUTION = 512
"""Largest image side (the GPU benchmark renders the scene at the paper's 497 px)."""


def make_sample_scene(
    out_dir: str | Path,
    *,
    num_views: int = 36,
    resolution: int = 64,
    seed: int = 0,
    num_points: int = SPARSE_POINTS,
) -> SampleScene:
    """Write the sample scene to `out_dir` and return it. Same arguments, same bytes.

    `out_dir` must be empty, missing, or an earlier sample scene (which is replaced).
    `num_points`: sparse points written (0: no point file, as a capture without SfM).
    """
    if not 24 <= num_views <= 60:
        raise ValueError(f"num_views must be in [24, 60], got {num_views}")
    if not 32 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be in [32, {MAX_RESOLUTION}], got {resolution}")
    if num_points < 0:
        raise ValueError(f"num_points must be >= 0, got {num_points}")
    root = _prepare_out_dir(Path(out_dir))
    rng = np.random.default_rng(seed)
    objects = _build_objects(rng)
    views = _orbit_views(num_views, resolution, rng)
    seen = [_seen_surface(view, _write_view(root, objects, view)) for view in views]
    (root / SPARSE_POINTS_FILE).unlink(missing_ok=True)
    if num_points:
        _write_sparse_points(root / SPARSE_POINTS_FILE, seen, num_points, rng)
    points_file = SPARSE_POINTS_FILE if num_points else None
    (root / "transforms.json").write_text(
        json.dumps(transforms_json(views, points_file), indent=2)
    )
    meta = {
        "format": SCENE_FORMAT,
        "version": SCENE_FORMAT_VERSION,
        "seed": seed,
        "world": {"up": [0.0, 0.0, 1.0], "origin": list(SCENE_ORIGIN), "units": "metres"},
        "background": list(BACKGROUND_COLOR),
        "light": {"direction": list(LIGHT_DIRECTION), "ambient": AMBIENT},
        "ground_checker": {"size": CHECKER_SIZE, "dark_factor": CHECKER_DARK},
        "objects": [o.to_json() for o in objects],
    }
    (root / "objects.json").write_text(json.dumps(meta, indent=2))
    return SampleScene(root, objects, views, seed)
