"""Exported geometry as plain arrays (world frame), ready for files or for streaming.

Colours are float32 in [0, 1], the same encoding as rendered images (display/sRGB
values); file writers convert where a format prescribes linear colour (glTF).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check_rows(name: str, array: np.ndarray | None, rows: int, cols: int) -> None:
    if array is not None and array.shape != (rows, cols):
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {array.shape}")


@dataclass
class PointCloud:
    """Points in the dataset's world frame."""

    points: np.ndarray
    """[N, 3] float32 positions."""
    colors: np.ndarray
    """[N, 3] float32 colours in [0, 1]."""
    normals: np.ndarray | None = None
    """[N, 3] float32 unit normals, or None."""

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32)
        self.colors = np.asarray(self.colors, dtype=np.float32)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points must be [N, 3], got {self.points.shape}")
        n = len(self.points)
        _check_rows("colors", self.colors, n, 3)
        if self.normals is not None:
            self.normals = np.asarray(self.normals, dtype=np.float32)
            _check_rows("normals", self.normals, n, 3)

    def __len__(self) -> int:
        return len(self.points)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for the wire (the add-on builds the object from these)."""
        arrays = {"points": self.points, "colors": self.colors}
        if self.normals is not None:
            arrays["normals"] = self.normals
        return arrays


@dataclass
class Mesh:
    """A triangle mesh with per-vertex colours in the dataset's world frame."""

    vertices: np.ndarray
    """[V, 3] float32 positions."""
    faces: np.ndarray
    """[F, 3] int64 vertex indices, counter-clockwise seen from outside."""
    colors: np.ndarray
    """[V, 3] float32 vertex colours in [0, 1]."""
    normals: np.ndarray | None = None
    """[V, 3] float32 unit vertex normals, or None."""

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float32)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        self.colors = np.asarray(self.colors, dtype=np.float32)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must be [V, 3], got {self.vertices.shape}")
        n = len(self.vertices)
        _check_rows("colors", self.colors, n, 3)
        if self.normals is not None:
            self.normals = np.asarray(self.normals, dtype=np.float32)
            _check_rows("normals", self.normals, n, 3)
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= n):
            raise ValueError(f"faces index vertices outside [0, {n})")

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for the wire (the add-on builds the object from these)."""
        arrays = {"vertices": self.vertices, "faces": self.faces, "colors": self.colors}
        if self.normals is not None:
            arrays["normals"] = self.normals
        return arrays


SH_C0 = 0.28209479177387814
"""Zeroth-order real spherical harmonic: colour = 0.5 + SH_C0 * f_dc."""


@dataclass
class GaussianSplats:
    """A 3D Gaussian splatting model in the layout of the reference implementation's PLY."""

    means: np.ndarray
    """[N, 3] centres."""
    scales_log: np.ndarray
    """[N, 3] log of the per-axis standard deviations."""
    quats_wxyz: np.ndarray
    """[N, 4] rotations as quaternions (w, x, y, z); normalised by readers."""
    opacities_logit: np.ndarray
    """[N] opacity before the sigmoid."""
    sh_dc: np.ndarray
    """[N, 3] degree-0 SH coefficients per colour channel."""
    sh_rest: np.ndarray
    """[N, K-1, 3] higher-order SH coefficients (K = (degree+1)^2; K-1 may be 0)."""

    def __post_init__(self) -> None:
        n = len(self.means)
        for name, cols in (("means", 3), ("scales_log", 3), ("quats_wxyz", 4), ("sh_dc", 3)):
            value = np.asarray(getattr(self, name), dtype=np.float32)
            _check_rows(name, value, n, cols)
            setattr(self, name, value)
        self.opacities_logit = np.asarray(self.opacities_logit, dtype=np.float32).reshape(n)
        self.sh_rest = np.asarray(self.sh_rest, dtype=np.float32).reshape(n, -1, 3)
        rest = self.sh_rest.shape[1]
        if round(np.sqrt(rest + 1)) ** 2 != rest + 1:
            raise ValueError(f"sh_rest must hold (degree+1)^2 - 1 coefficients, got {rest}")

    @staticmethod
    def dc_from_rgb(rgb: np.ndarray) -> np.ndarray:
        """The degree-0 coefficients that render as `rgb` (in [0, 1])."""
        return (np.asarray(rgb, dtype=np.float32) - 0.5) / SH_C0
