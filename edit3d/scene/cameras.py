"""Cameras in the dataset's world frame (OpenGL/Blender convention: looks down -Z, +Y up)."""

from __future__ import annotations

from dataclasses import dataclass

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
