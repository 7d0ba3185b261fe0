"""Faces aligned as GFPGAN was trained: FFHQ's 5-landmark similarity alignment.

GFPGAN restores 512 px crops in which the eyes, nose tip and mouth corners sit at fixed
places (the FFHQ template). `align_face` finds the similarity transform (rotation, uniform
scale, translation; no shear, no mirror) that maps a face's five landmarks closest onto the
template in the least-squares sense and warps the face into that frame; `paste_face` warps
the restored crop back into the upscaled image through a feathered mask.
"""

from __future__ import annotations

import numpy as np

FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],  # left eye (image left)
        [318.90277, 240.19360],  # right eye
        [256.63416, 314.01935],  # nose tip
        [201.26117, 371.41043],  # left mouth corner
        [313.08905, 371.15118],  # right mouth corner
    ],
    dtype=np.float64,
)
"""The five landmarks of a 512 px FFHQ-aligned face (x right, y down): the template GFPGAN's
face helper aligns to."""

FEATHER_FRACTION = 1 / 16
"""Width of the paste mask's soft edge, as a fraction of the crop side."""


def template(size: int) -> np.ndarray:
    """[5, 2] the FFHQ landmarks for a `size` px crop."""
    if size < 8:
        raise ValueError(f"size must be >= 8 px, got {size}")
    return FFHQ_TEMPLATE_512 * (size / 512.0)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[2, 3] affine A = [sR | t] minimising sum |sR p + t - q|^2 over point pairs (p, q)
    (Umeyama's closed form, reflection excluded)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2:
        raise ValueError(f"need matching [N, 2] point sets, got {source.shape}, {target.shape}")
    mean_s, mean_t = source.mean(0), target.mean(0)
    centred_s, centred_t = source - mean_s, target - mean_t
    variance = (centred_s**2).sum() / len(source)
    if variance <= 0:
        raise ValueError("landmarks must not all coincide")
    u, singular, vt = np.linalg.svd(centred_t.T @ centred_s / len(source))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign)) / variance
    translation = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(crop [size, size, 3], affine [2, 3] from image to crop pixels): the face warped so
    its landmarks [5, 2] land on the FFHQ template; borders reflected. Coordinates are
    OpenCV's, as face detectors report them: x right, y down, pixel centres at integers."""
    import cv2

    affine = similarity_transform(np.asarray(landmarks, np.float64), template(size))
    crop = cv2.warpAffine(
        np.asarray(image, np.float32),
        affine,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return np.clip(crop, 0.0, 1.0), affine


def feathered_mask(size: int) -> np.ndarray:
    """[size, size] float32: 1 inside, a smoothstep fall to 0 over the outer
    `FEATHER_FRACTION` of the crop on every side."""
    feather = max(size * FEATHER_FRACTION, 1.0)
    centers = np.arange(size, dtype=np.float64) + 0.5
    t = np.clip(np.minimum(centers, size - centers) / feather, 0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    return np.outer(ramp, ramp).astype(np.float32)


def paste_face(out: np.ndarray, restored: np.ndarray, affine: np.ndarray, scale: int) -> np.ndarray:
    """Blend `restored` [S, S, 3] (a crop made by `align_face` with `affine`, image -> crop)
    into `out` [H*scale, W*scale, 3] in place; returns the paste weight [H*scale, W*scale]."""
    import cv2

    size = restored.shape[0]
    # Crop coordinates from output pixels: c = A[:, :2] (x_out / scale) + A[:, 2].
    to_crop = np.hstack([affine[:, :2] / scale, affine[:, 2:]])
    to_out = cv2.invertAffineTransform(to_crop)
    height, width = out.shape[:2]
    warped = cv2.warpAffine(
        np.asarray(restored, np.float32), to_out, (width, height), flags=cv2.INTER_LINEAR
    )
    weight = cv2.warpAffine(feathered_mask(size), to_out, (width, height), flags=cv2.INTER_LINEAR)
    weight = np.clip(weight, 0.0, 1.0)
    out[:] = out * (1.0 - weight[..., None]) + warped * weight[..., None]
    return weight
