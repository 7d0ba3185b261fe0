"""Gaussian splats of a field, moved into the dataset's world frame for 3DGS tools.

A splatting backend keeps its Gaussians in its own (field) frame: nerfstudio's dataparser
re-orients, recentres and rescales the dataset, ``p_field = s · (R p_world + t)``. Tools that
read the reference 3DGS PLY (viewers, the Blender 3DGS add-ons) expect the frame of the
dataset's cameras, so each Gaussian is carried back whole:

* centres by the affine field→world map;
* orientations by its rotation (a reflection is absorbed by flipping the Gaussian's axes,
  which leaves its covariance unchanged);
* log-scales by the log of its uniform scale;
* view-dependent colour by rotating the SH coefficients of degrees 1..3: each degree's
  coefficients are re-fitted (least squares on a fixed set of directions, exact because a
  rotation maps each degree's functions onto themselves) so that the colour seen along a world
  direction is the colour the field showed along the same direction in its own frame.
  Degree 0 (the base colour) does not depend on direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edit3d.export.geometry import GaussianSplats

MAX_SH_DEGREE = 3
"""Highest SH degree rotated (the reference 3DGS layout stops there)."""

_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
       0.5462742152960396)  # fmt: skip
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)  # fmt: skip


def sh_basis(degree: int, dirs: np.ndarray) -> np.ndarray:
    """[M, 2·degree+1] real SH functions of one degree (1..3) at unit directions [M, 3], in
    the order and with the signs of the reference 3DGS renderer (and gsplat)."""
    x, y, z = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    if degree == 1:
        return np.stack([-_C1 * y, _C1 * z, -_C1 * x], axis=1)
    xx, yy, zz = x * x, y * y, z * z
    if degree == 2:
        return np.stack(
            [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z,
             _C2[4] * (xx - yy)],
            axis=1,
        )  # fmt: skip
    if degree == 3:
        return np.stack(
            [_C3[0] * y * (3 * xx - yy), _C3[1] * x * y * z, _C3[2] * y * (4 * zz - xx - yy),
             _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy),
             _C3[5] * z * (xx - yy), _C3[6] * x * (xx - 3 * yy)],
            axis=1,
        )  # fmt: skip
    raise ValueError(f"degree must be 1..{MAX_SH_DEGREE}, got {degree}")


def _fit_directions(count: int = 64) -> np.ndarray:
    """[count, 3] unit directions spread over the sphere (Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    phi = np.pi * (1.0 + np.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def sh_rotation(degree: int, rotation: np.ndarray) -> np.ndarray:
    """[2l+1, 2l+1] matrix W with basis(d)·(W c) = basis(rotationᵀ d)·c for every unit d:
    coefficients c of a function seen through `rotation` (any orthogonal 3×3)."""
    dirs = _fit_directions()
    before = sh_basis(degree, dirs @ rotation)  # rows: basis at rotationᵀ d
    after = sh_basis(degree, dirs)
    return np.linalg.lstsq(after, before, rcond=None)[0]


def rotate_sh(sh_rest: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """[N, K-1, 3] SH coefficients of degrees 1.. (as `GaussianSplats.sh_rest`) rotated."""
    degree = round(np.sqrt(sh_rest.shape[1] + 1)) - 1
    if degree > MAX_SH_DEGREE:
        raise ValueError(f"sh_rest: SH degree must be at most {MAX_SH_DEGREE}, got {degree}")
    out = np.empty_like(sh_rest, dtype=np.float64)
    for level in range(1, degree + 1):
        band = slice(level * level - 1, (level + 1) ** 2 - 1)
        out[:, band] = np.einsum("ij,njc->nic", sh_rotation(level, rotation), sh_rest[:, band])
    return out.astype(np.float32)


def quat_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """(w, x, y, z) unit quaternion of a proper rotation matrix, w ≥ 0."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    candidates = np.array([trace, m[0, 0], m[1, 1], m[2, 2]])
    k = int(np.argmax(candidates))
    if k == 0:
        w = np.sqrt(1.0 + trace) / 2.0
        q = [w, (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w),
             (m[1, 0] - m[0, 1]) / (4 * w)]  # fmt: skip
    else:
        i, j, c = k - 1, k % 3, (k + 1) % 3  # the largest diagonal axis, then cyclic order
        v = np.sqrt(1.0 + m[i, i] - m[j, j] - m[c, c]) / 2.0
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[c, j] - m[j, c]) / (4 * v)
        q[1 + i] = v
        q[1 + j] = (m[j, i] + m[i, j]) / (4 * v)
        q[1 + c] = (m[c, i] + m[i, c]) / (4 * v)
    quat = np.asarray(q)
    return quat if quat[0] >= 0 else -quat


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products a ⊗ b of (w, x, y, z) quaternions ([4] or [N, 4], broadcast)."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        [aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
         aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw],
        axis=-1,
    )  # fmt: skip


def split_similarity(field_to_world: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(uniform scale s, orthogonal Q, translation t) with field_to_world = [s·Q | t].

    Raises ValueError when the map shears or scales axes unequally (a Gaussian would not stay
    a Gaussian with three axis scales)."""
    m = np.asarray(field_to_world, dtype=np.float64)
    if m.shape not in ((4, 4), (3, 4)):
        raise ValueError(f"field_to_world must be a 4x4 or 3x4 matrix, got shape {m.shape}")
    linear = m[:3, :3]
    scale = float(abs(np.linalg.det(linear)) ** (1.0 / 3.0))
    if not np.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"field_to_world must be invertible, got linear part {linear.tolist()}")
    q = linear / scale
    if not np.allclose(q.T @ q, np.eye(3), atol=1e-5):
        raise ValueError(
            "field_to_world must be a similarity (rotation, one uniform scale, translation); "
            f"got linear part {linear.tolist()}"
        )
    return scale, q, m[:3, 3].copy()


def splats_to_world(splats: GaussianSplats, field_to_world: np.ndarray) -> GaussianSplats:
    """`splats` (field frame) carried into the world frame by the similarity `field_to_world`
    ([4, 4] or [3, 4]); see the module docstring. Opacities are unchanged."""
    scale, q, t = split_similarity(field_to_world)
    proper = q if np.linalg.det(q) > 0 else -q  # -I flips all three axes: same covariance
    quats = splats.quats_wxyz.astype(np.float64)
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = quats / np.where(norms > 0, norms, 1.0)
    return GaussianSplats(
        means=splats.means.astype(np.float64) @ (scale * q).T + t,
        scales_log=splats.scales_log + np.float32(np.log(scale)),
        quats_wxyz=quat_multiply(quat_from_matrix(proper), quats),
        opacities_logit=splats.opacities_logit.copy(),
        sh_dc=splats.sh_dc.copy(),
        sh_rest=rotate_sh(splats.sh_rest, q),
    )


def field_to_world_matrix(field: Any) -> np.ndarray:
    """[4, 4] field→world map of a `RadianceField`, read through its `points_to_world`."""
    probe = np.vstack([np.zeros(3), np.eye(3)])
    world = np.asarray(field.points_to_world(probe), dtype=np.float64)
    matrix = np.eye(4)
    matrix[:3, :3] = (world[1:] - world[0]).T
    matrix[:3, 3] = world[0]
    return matrix


def world_gaussians(field: Any) -> GaussianSplats:
    """The field's Gaussians in the dataset's world frame.

    Raises ValueError for a backend that has none (a NeRF)."""
    # Fields that do not define `gaussians()` at all have none, as do those returning None.
    read = getattr(field, "gaussians", None)
    splats = read() if callable(read) else None
    if splats is None:
        raise ValueError(
            f"the {field.backend} backend has no Gaussians; export a point cloud or mesh"
        )
    return splats_to_world(splats, field_to_world_matrix(field))
