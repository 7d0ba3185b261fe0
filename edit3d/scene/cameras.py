"""Cameras in the dataset's world frame (OpenGL/Blender convention: looks down -Z, +Y up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """The same camera rendered at another resolution (field of view kept)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    def as_matrix(self) -> np.ndarray:
        """The 3x3 K matrix."""
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )


@dataclass(frozen=True)
class CameraView:
    """One camera: a name (the image file name for dataset views), pose and intrinsics."""

    name: str
    c2w: np.ndarray  # [4, 4] float64, camera-to-world, world = dataset frame
    intrinsics: Intrinsics

    def __post_init__(self) -> None:
        c2w = np.asarray(self.c2w, dtype=np.float64)
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
        if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
            raise ValueError(f"camera {self.name!r}: c2w must be a finite 4x4 matrix, got {c2w}")
        object.__setattr__(self, "c2w", c2w)

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3]


CAMERA_KEYS = ("c2w", "fx", "fy", "cx", "cy", "width", "height")
"""Fields of a camera record in JSON: the protocol's `Camera` record (name optional)."""


def cameras_from_json(path: str | Path) -> list[CameraView]:
    """Cameras from a JSON file: one record or a list of records, each
    `{"c2w": 4x4, "fx", "fy", "cx", "cy", "width", "height", "name"?}` in the dataset's
    world frame. ValueError names the record and field that is wrong."""
    return cameras_from_json_text(Path(path).read_text())


def cameras_from_json_text(text: str) -> list[CameraView]:
    """`cameras_from_json` on the file's text."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error})") from None
    records = data if isinstance(data, list) else [data]
    if not records:
        raise ValueError("no cameras in the file")
    return [_camera_from_record(record, index) for index, record in enumerate(records)]


def _camera_from_record(record: object, index: int) -> CameraView:
    if not isinstance(record, dict):
        raise ValueError(f"camera {index}: expected an object, got {type(record).__name__}")
    missing = [key for key in CAMERA_KEYS if key not in record]
    if missing:
        raise ValueError(f"camera {index}: missing {', '.join(missing)}")
    try:
        c2w = np.asarray(record["c2w"], dtype=np.float64)
        numbers = [float(record[key]) for key in ("fx", "fy", "cx", "cy")]
        width, height = int(record["width"]), int(record["height"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"camera {index}: {error}") from None
    if c2w.shape not in ((4, 4), (3, 4)):
        raise ValueError(f"camera {index}: c2w must be 4x4, got shape {c2w.shape}")
    if width < 1 or height < 1 or not all(np.isfinite(numbers)) or min(numbers[:2]) <= 0:
        raise ValueError(f"camera {index}: width/height must be >= 1 and fx, fy > 0")
    name = str(record.get("name") or "")
    return CameraView(name, c2w, Intrinsics(*numbers, width, height))
