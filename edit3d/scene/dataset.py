"""Datasets on disk → views in the dataset's world frame, images, and nerfstudio's transform.

Supported layouts:

* nerfstudio (`transforms.json`, also what `ns-process-data` writes for COLMAP captures);
* Blender-synthetic (`transforms_train.json` with `camera_angle_x`);
* a COLMAP sparse model (`colmap/sparse/0` or `sparse/0`, images in `images/`), read by
  nerfstudio's ColmapDataParser; its world frame is COLMAP's.

The world frame is the frame of the poses *as written in the file*. nerfstudio's own
dataparsers compute the re-orientation and scale it trains in, so a field built here uses
exactly the transform an `ns-train` run on the same folder uses:

    c2w_nerfstudio = T @ c2w_world, then translation * scale

with `T` the 3x4 `dataparser_transform` (for `ns-process-data` output, the part of it that
undoes `applied_transform` is folded in, because the file's poses already carry it).

A dataset's sparse points (structure from motion: a transforms.json `ply_file_path`, a
COLMAP model's `points3D.bin|txt`) are read into `SceneDataset.points` in that training frame,
as nerfstudio's dataparsers hand them to splatfacto (`load_3D_points`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import numpy as np

from edit3d.scene.cameras import CameraView, Intrinsics

DatasetFormat = Literal["nerfstudio", "blender", "colmap"]

COLMAP_MODEL_DIRS = ("colmap/sparse/0", "sparse/0")
"""Where a COLMAP sparse model is looked for inside a dataset folder (images in images/)."""


@dataclass(frozen=True)
class SparsePoints:
    """A dataset's sparse 3D points as nerfstudio's dataparsers give them to splatfacto
    (`metadata["points3D_xyz"]`, `metadata["points3D_rgb"]`)."""

    xyz: np.ndarray
    """[N, 3] float32 positions in the field frame: dataparser transform, then scale."""
    rgb: np.ndarray
    """[N, 3] uint8 colours; [0, 3] when the points file has none."""


@dataclass
class SceneDataset:
    """A dataset's training views in its world frame, with lazy image access."""

    root: Path
    """Folder of the dataset."""
    format: DatasetFormat
    """Which layout was read."""
    views: list[CameraView]
    """Training views in nerfstudio's training order (sorted by file name), world frame."""
    image_paths: dict[str, Path]
    """Image file of each view, keyed by view name (the `file_path` as written)."""
    transform: np.ndarray
    """[3, 4] world → nerfstudio rotation+translation, applied before `scale`."""
    scale: float
    """nerfstudio's dataparser scale (world units → field units)."""
    scene_aabb: np.ndarray
    """[2, 3] nerfstudio scene box in field units."""
    distortion: dict[str, np.ndarray] = field(default_factory=dict)
    """OpenCV distortion [k1, k2, k3, k4, p1, p2] of views that have any."""
    alpha_color: tuple[float, float, float] | None = None
    """Background that RGBA images are composited over (Blender-synthetic: white)."""
    colmap_model: str | None = None
    """COLMAP model folder relative to root (COLMAP layout only)."""
    camera_model: str = "PERSPECTIVE"
    """nerfstudio's camera type of the views ("PERSPECTIVE", "FISHEYE", "EQUIRECTANGULAR",
    ...; types joined by "+" if views differ), as its dataparser reads the dataset."""
    points: SparsePoints | None = None
    """The dataset's sparse points in the field frame (nerfstudio's `ply_file_path`, a
    COLMAP model's points3D), or None when it has none."""

    def image(self, name: str, *, max_size: int | None = None) -> np.ndarray:
        """The view's image, float32 [H, W, 3] in [0, 1], shrunk so its longest side ≤ max_size."""
        if name not in self.image_paths:
            raise ValueError(f"name must be a view of this dataset, got {name!r}")
        return load_image(self.image_paths[name], max_size=max_size, alpha_color=self.alpha_color)

    def images(self, *, max_size: int | None = None) -> dict[str, np.ndarray]:
        return {view.name: self.image(view.name, max_size=max_size) for view in self.views}

    def nerfstudio_cameras(self) -> Any:
        """The training cameras exactly as nerfstudio's dataparser returns them (for checks)."""
        return _run_dataparser(self.root, self.format, self.colmap_model).cameras


def load_dataset(path: str | Path) -> SceneDataset:
    """Read a dataset folder (or its transforms file) in the nerfstudio or Blender layout."""
    path = Path(path)
    root = path.parent if path.is_file() else path
    if (root / "transforms.json").is_file():
        return _load_nerfstudio(root)
    if (root / "transforms_train.json").is_file():
        return _load_blender(root)
    for model_dir in COLMAP_MODEL_DIRS:
        if any((root / model_dir / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return _load_colmap(root, model_dir)
    raise ValueError(
        f"path must hold transforms.json (nerfstudio / ns-process-data), "
        f"transforms_train.json (Blender-synthetic) or a COLMAP model in "
        f"{' or '.join(COLMAP_MODEL_DIRS)}, got {str(path)!r}"
    )


def load_image(
    path: Path, *, max_size: int | None = None, alpha_color: tuple[float, ...] | None = None
) -> np.ndarray:
    """An image file as float32 [H, W, 3] in [0, 1], optionally downscaled (area filter).

    The EXIF orientation is applied (phone photos store pixels sideways and a rotation tag).
    """
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        img = ImageOps.exif_transpose(opened)
        img.load()
        if max_size is not None and max(img.size) > max_size:
            ratio = max_size / max(img.size)
            size = (max(1, round(img.width * ratio)), max(1, round(img.height * ratio)))
            img = img.convert("RGBA").resize(size, Image.Resampling.BOX)
        array = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    rgb, alpha = array[..., :3], array[..., 3:4]
    if alpha_color is not None:
        rgb = rgb * alpha + np.asarray(alpha_color, dtype=np.float32) * (1.0 - alpha)
    return np.ascontiguousarray(rgb, dtype=np.float32)


# --- nerfstudio layout -------------------------------------------------------------------


def confined_path(root: Path, name: str, path: Path | None = None) -> Path:
    """The file `name` names inside dataset folder `root`, refused if it could leave it.

    A dataset's file names come from its transforms or COLMAP files, i.e. from whoever made
    the dataset: an absolute name, a `..` component or a symlink leading out of `root` would
    let the dataset read any file on the machine. `path` is where the loader looks for it
    (default root / name). Raises ValueError naming the entry.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset {str(root)!r}: an image file_path must be a non-empty "
                         f"string, got {name!r}")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(name).drive or ".." in pure.parts:
        raise ValueError(f"dataset {str(root)!r}: file_path {name!r} must be relative to the "
                         "dataset folder, without '..'")
    path = root / name if path is None else path
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise ValueError(f"dataset {str(root)!r}: file_path {name!r} leads outside the dataset "
                         "folder (through a symlink)")
    return path


def _confine_frames(root: Path, frames: list[dict], suffix: str = "") -> None:
    """Check every file a transforms file names before anything reads one."""
    for frame in frames:
        confined_path(root, str(frame.get("file_path", "")) + suffix)
        for key in ("mask_path", "depth_file_path"):
            if key in frame:
                confined_path(root, frame[key])


def _load_nerfstudio(root: Path) -> SceneDataset:
    meta = json.loads((root / "transforms.json").read_text())
    _confine_frames(root, meta["frames"])
    frames = sorted(meta["frames"], key=lambda f: str(root / f["file_path"]))
    views, paths, distortion = [], {}, {}
    for frame in frames:
        name = frame["file_path"]
        views.append(
            CameraView(name, np.asarray(frame["transform_matrix"]), _intrinsics(meta, frame))
        )
        paths[name] = root / name
        coeffs = np.array([_get(meta, frame, k, 0.0) for k in ("k1", "k2", "k3", "k4", "p1", "p2")])
        if np.any(coeffs != 0.0):
            distortion[name] = coeffs
    outputs = _run_dataparser(root, "nerfstudio")
    transform, scale = _for_file_poses(
        np.asarray(outputs.dataparser_transform, dtype=np.float64),
        float(outputs.dataparser_scale),
        meta,
    )
    dataset = _checked_dataset(
        outputs, root, "nerfstudio", views, paths, transform, scale, distortion=distortion
    )
    if "ply_file_path" in meta:
        # nerfstudio maps the file's points with the transform of the file's poses but with
        # its reported scale (which includes any `applied_scale`); so does this.
        points = _ply_points(root, meta["ply_file_path"])
        dataset.points = _to_field_frame(points, transform, float(outputs.dataparser_scale))
    return dataset


def nerfstudio_transform_for_file_poses(
    transform: np.ndarray, scale: float, root: Path
) -> tuple[np.ndarray, float]:
    """nerfstudio's reported (transform, scale) re-expressed for the poses as written in the
    dataset's transforms file (what `dataparser_transforms.json` holds needs this too)."""
    meta_path = root / "transforms.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return _for_file_poses(transform, scale, meta)


def _for_file_poses(transform: np.ndarray, scale: float, meta: dict) -> tuple[np.ndarray, float]:
    # ns-process-data writes poses that already carry `applied_transform`, while nerfstudio
    # reports its transform from the frame before it (COLMAP's): undo it once here.
    if "applied_transform" not in meta:
        return transform, scale
    applied = np.vstack([np.asarray(meta["applied_transform"], dtype=np.float64), [0, 0, 0, 1]])
    transform = (np.vstack([transform, [0, 0, 0, 1]]) @ np.linalg.inv(applied))[:3]
    return transform, scale / float(meta.get("applied_scale", 1.0))


def _get(meta: dict, frame: dict, key: str, default: Any = None) -> Any:
    return frame.get(key, meta.get(key, default))


def _intrinsics(meta: dict, frame: dict) -> Intrinsics:
    keys = ("fl_x", "fl_y", "cx", "cy", "w", "h")
    values = {k: _get(meta, frame, k) for k in keys}
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise ValueError(f"frame {frame.get('file_path')!r} lacks intrinsics {missing}")
    return Intrinsics(
        fx=float(values["fl_x"]),
        fy=float(values["fl_y"]),
        cx=float(values["cx"]),
        cy=float(values["cy"]),
        width=int(values["w"]),
        height=int(values["h"]),
    )


# --- Blender-synthetic layout ----------------------------------------------------------------


def _load_blender(root: Path) -> SceneDataset:
    meta = json.loads((root / "transforms_train.json").read_text())
    _confine_frames(root, meta["frames"], suffix=".png")
    outputs = _run_dataparser(root, "blender")
    first = Path(str(outputs.image_filenames[0]))
    from PIL import Image

    with Image.open(first) as img:
        width, height = img.size
    focal = 0.5 * width / np.tan(0.5 * float(meta["camera_angle_x"]))
    intrinsics = Intrinsics(focal, focal, width / 2.0, height / 2.0, width, height)
    views, paths = [], {}
    for frame in meta["frames"]:
        name = frame["file_path"]
        views.append(CameraView(name, np.asarray(frame["transform_matrix"]), intrinsics))
        paths[name] = root / (name.replace("./", "") + ".png")
    transform = np.eye(4)[:3]
    scale = float(outputs.dataparser_scale)
    return _checked_dataset(
        outputs, root, "blender", views, paths, transform, scale, alpha_color=(1.0, 1.0, 1.0)
    )


# --- COLMAP sparse model ----------------------------------------------------------------------


def _load_colmap(root: Path, model_dir: str) -> SceneDataset:
    """A COLMAP model read by nerfstudio's ColmapDataParser; world = COLMAP's frame.

    Cameras use the OpenGL convention (COLMAP's OpenCV axes flipped); names are the image
    paths relative to the dataset folder ("images/<name>").
    """
    outputs = _run_dataparser(root, "colmap", model_dir=model_dir)
    transform = np.asarray(outputs.dataparser_transform, dtype=np.float64)
    scale = float(outputs.dataparser_scale)
    from_field = np.linalg.inv(np.vstack([transform, [0.0, 0.0, 0.0, 1.0]]))
    cameras = outputs.cameras
    views, paths, distortion = [], {}, {}
    for i, filename in enumerate(outputs.image_filenames):
        name = Path(filename).relative_to(root).as_posix()
        c2w = np.vstack([cameras.camera_to_worlds[i].double().numpy(), [0.0, 0.0, 0.0, 1.0]])
        c2w[:3, 3] /= scale
        intrinsics = Intrinsics(
            fx=float(cameras.fx[i]),
            fy=float(cameras.fy[i]),
            cx=float(cameras.cx[i]),
            cy=float(cameras.cy[i]),
            width=int(cameras.width[i]),
            height=int(cameras.height[i]),
        )
        views.append(CameraView(name, from_field @ c2w, intrinsics))
        paths[name] = Path(filename)
        if cameras.distortion_params is not None and bool(cameras.distortion_params[i].any()):
            distortion[name] = cameras.distortion_params[i].double().numpy()
    dataset = _checked_dataset(
        outputs,
        root,
        "colmap",
        views,
        paths,
        transform,
        scale,
        distortion=distortion,
        colmap_model=model_dir,
    )
    points = _colmap_points(root / model_dir)
    if points is not None:
        dataset.points = _to_field_frame(points, transform, scale)
    return dataset


# --- sparse points -----------------------------------------------------------------------


def _ply_points(root: Path, name: Any) -> tuple[np.ndarray, np.ndarray]:
    """(positions [N, 3] float32, colours [N, 3] uint8) of the PLY a transforms.json names.

    Colours are the file's `red green blue` (uchar as stored, floats in [0, 1] times 255
    truncated, as nerfstudio reads them through open3d); a file without colours gives none.
    """
    from edit3d.export.ply import read_ply

    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset {str(root)!r}: ply_file_path must be a file name, got {name!r}")
    path = confined_path(root, name)
    if not path.is_file():
        raise ValueError(f"dataset {str(root)!r}: ply_file_path {name!r} names no file")
    try:
        vertex = read_ply(path).get("vertex", {})
    except (ValueError, KeyError) as error:
        raise ValueError(f"dataset {str(root)!r}: ply_file_path {name!r}: {error}") from None
    if not all(axis in vertex for axis in "xyz"):
        raise ValueError(f"dataset {str(root)!r}: ply_file_path {name!r} has no x y z vertices")
    xyz = np.stack([vertex[axis] for axis in "xyz"], axis=-1).astype(np.float32)
    channels = ("red", "green", "blue")
    if not all(c in vertex for c in channels):
        return xyz, np.zeros((0, 3), np.uint8)
    rgb = np.stack([vertex[c] for c in channels], axis=-1)
    if rgb.dtype.kind == "f":
        rgb = np.clip(rgb.astype(np.float64), 0.0, 1.0) * 255.0
    return xyz, rgb.astype(np.uint8)


def _colmap_points(model: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions, colours) of a COLMAP model's points3D.bin|txt, or None without points."""
    from nerfstudio.data.utils import colmap_parsing_utils as colmap

    if (model / "points3D.bin").is_file():
        points = colmap.read_points3D_binary(model / "points3D.bin")
    elif (model / "points3D.txt").is_file():
        points = colmap.read_points3D_text(model / "points3D.txt")
    else:
        return None
    if not points:
        return None
    xyz = np.array([p.xyz for p in points.values()], dtype=np.float32)
    return xyz, np.array([p.rgb for p in points.values()], dtype=np.uint8)


def _to_field_frame(
    points: tuple[np.ndarray, np.ndarray], transform: np.ndarray, scale: float
) -> SparsePoints | None:
    """Points of the file's frame in the field frame, computed as nerfstudio's dataparsers
    compute `points3D_xyz` (float32: homogeneous points times the transform, then scale)."""
    import torch

    xyz, rgb = points
    if len(xyz) == 0:
        return None  # nerfstudio: no points, random initialisation
    homogeneous = torch.cat([torch.from_numpy(xyz), torch.ones(len(xyz), 1)], dim=-1)
    field = homogeneous @ torch.tensor(transform, dtype=torch.float32).T
    field *= scale
    return SparsePoints(xyz=field.numpy(), rgb=rgb)


# --- nerfstudio's dataparsers ------------------------------------------------------------


def _run_dataparser(root: Path, fmt: DatasetFormat, model_dir: str | None = None) -> Any:
    """nerfstudio's DataparserOutputs for all images (no train/eval split, no auto-downscale)."""
    from nerfstudio.utils.rich_utils import CONSOLE

    # Every image is a training view here by design; nerfstudio's console notes about
    # eval splits would only be noise on each load.
    quiet, CONSOLE.quiet = CONSOLE.quiet, True
    try:
        return _dataparser_outputs(root, fmt, model_dir)
    finally:
        CONSOLE.quiet = quiet


def _dataparser_outputs(root: Path, fmt: DatasetFormat, model_dir: str | None) -> Any:
    config = nerfstudio_dataparser_config(root, fmt, model_dir)
    return config.setup().get_dataparser_outputs("train")


def nerfstudio_dataparser_config(
    root: Path, fmt: DatasetFormat, model_dir: str | None = None
) -> Any:
    """nerfstudio's dataparser config that reads this dataset as edit3d does: every image a
    training view, no downscale (also what a written nerfstudio run points at)."""
    if fmt == "colmap":
        from nerfstudio.data.dataparsers.colmap_dataparser import ColmapDataParserConfig

        return ColmapDataParserConfig(
            data=root,
            colmap_path=Path(model_dir or COLMAP_MODEL_DIRS[0]),
            eval_mode="all",
            downscale_factor=1,
            load_3D_points=False,
        )
    if fmt == "blender":
        from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

        return BlenderDataParserConfig(data=root)
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    return NerfstudioDataParserConfig(data=root, eval_mode="all", downscale_factor=1)


def _checked_dataset(
    outputs: Any,
    root: Path,
    fmt: DatasetFormat,
    views: list[CameraView],
    paths: dict[str, Path],
    transform: np.ndarray,
    scale: float,
    *,
    distortion: dict[str, np.ndarray] | None = None,
    alpha_color: tuple[float, float, float] | None = None,
    colmap_model: str | None = None,
) -> SceneDataset:
    """The dataset with nerfstudio's scene box, refused unless it reproduces their poses
    or names an image outside its folder."""
    for name, path in paths.items():
        confined_path(root, name, path)
    dataset = SceneDataset(
        root=root,
        format=fmt,
        views=views,
        image_paths=paths,
        transform=transform,
        scale=scale,
        scene_aabb=np.asarray(outputs.scene_box.aabb, dtype=np.float64),
        distortion=distortion or {},
        alpha_color=alpha_color,
        colmap_model=colmap_model,
        camera_model=_camera_model(outputs.cameras),
    )
    _check_against_dataparser(dataset, outputs)
    return dataset


def _camera_model(cameras: Any) -> str:
    from nerfstudio.cameras.cameras import CameraType

    types = sorted({CameraType(int(t)).name for t in cameras.camera_type.flatten().tolist()})
    return "+".join(types)


def _check_against_dataparser(dataset: SceneDataset, outputs: Any) -> None:
    """Our world→nerfstudio mapping must reproduce nerfstudio's own training poses.

    Compared image by image: with split lists in the file (`train_filenames`) nerfstudio
    returns only its training images, while every frame stays a view here.
    """
    by_path = {Path(path).resolve(): name for name, path in dataset.image_paths.items()}
    theirs = outputs.cameras.camera_to_worlds.detach().cpu().numpy().astype(np.float64)
    names = [by_path.get(Path(path).resolve()) for path in outputs.image_filenames]
    if None in names or len(names) != len(theirs):
        raise RuntimeError(f"{dataset.root}: nerfstudio's dataparser lists other images")
    views = {view.name: view for view in dataset.views}
    ours = np.stack(
        [world_c2w_to_nerfstudio(views[n].c2w, dataset.transform, dataset.scale) for n in names]
    )
    if not np.allclose(ours, theirs, atol=1e-4):
        raise RuntimeError(
            f"{dataset.root}: poses disagree with nerfstudio's dataparser "
            "(frame order or transform); refusing to train in a different frame"
        )


def world_c2w_to_nerfstudio(c2w: np.ndarray, transform: np.ndarray, scale: float) -> np.ndarray:
    """[4, 4] world camera-to-world → nerfstudio's [3, 4] camera-to-world (field units)."""
    out = (np.vstack([transform, [0.0, 0.0, 0.0, 1.0]]) @ np.asarray(c2w, dtype=np.float64))[:3]
    out[:, 3] *= scale
    return out
