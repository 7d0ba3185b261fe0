"""Mixed super-resolution of one view (paper Sec. 3.3): Real-ESRGAN everywhere, GFPGAN on faces.

Face path, per detected face with five landmarks: the face is warped into FFHQ's aligned
frame at GFPGAN's size (`edit3d.refine.face_align`), restored, and warped back over the
Real-ESRGAN output through a feathered mask. Per box without landmarks: a square crop of
the *input* view around the box (`face_crop_scale` times its longer side, edge-padded where
it leaves the image) is
restored by GFPGAN at its native size, resized to the crop's upscaled size and pasted over
the Real-ESRGAN output through a feathered mask: 1 inside the face box, falling smoothly
to 0 at the crop border, so the seam lies in the margin around the face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edit3d.models.sr import FaceRestorer
from edit3d.refine.faces import FaceBox, FaceDetector


class Upscaler(Protocol):
    """What upscales a view: Real-ESRGAN (`SuperResolver`) or the classical stand-in
    (`edit3d.refine.classical.LanczosUpscaler`)."""

    scale: int
    """Upscale factor."""
    name: str
    """What it is, as reports name it."""

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """float32 [H, W, 3] in [0, 1] -> [H*scale, W*scale, 3] in [0, 1]."""
        ...


@dataclass(frozen=True)
class FacePaste:
    """Where one restored face went in the upscaled image."""

    box: FaceBox
    """The detection, in input pixels."""
    crop: tuple[int, int, int]
    """(x0, y0, side) of the square crop, in input pixels (may extend past the image)."""
    mask: np.ndarray
    """[side*s, side*s] float32 paste weight over the crop (1 = restored face)."""


def upscale_view(
    image: np.ndarray,
    esrgan: Upscaler,
    gfpgan: FaceRestorer | None = None,
    detector: FaceDetector | None = None,
    *,
    face_crop_scale: float = 2.0,
) -> np.ndarray:
    """[H, W, 3] in [0, 1] -> [H*s, W*s, 3]: non-face regions by `esrgan`, faces by `gfpgan`.

    Faces are looked for only when both `gfpgan` and `detector` are given.
    """
    upscaled, _ = upscale_view_with_faces(
        image, esrgan, gfpgan, detector, face_crop_scale=face_crop_scale
    )
    return upscaled


def upscale_view_with_faces(
    image: np.ndarray,
    esrgan: Upscaler,
    gfpgan: FaceRestorer | None = None,
    detector: FaceDetector | None = None,
    *,
    face_crop_scale: float = 2.0,
) -> tuple[np.ndarray, list[FacePaste]]:
    """`upscale_view`, also returning where each face was pasted."""
    if face_crop_scale < 1.0:
        raise ValueError(f"face_crop_scale must be >= 1, got {face_crop_scale}")
    image = np.asarray(image, dtype=np.float32)
    out = esrgan.upscale(image)
    if gfpgan is None or detector is None:
        return out, []
    pastes = []
    for box in detector.detect(image):
        if box.landmarks is not None:
            pastes.append(_restore_aligned(image, out, box, esrgan.scale, gfpgan, face_crop_scale))
            continue
        crop = square_crop(box, face_crop_scale)
        restored = gfpgan.restore(_crop_padded(image, crop))
        restored = _resize_square(restored, crop[2] * esrgan.scale)
        mask = face_paste_mask(box, crop, esrgan.scale)
        _paste(out, restored, mask, crop, esrgan.scale)
        pastes.append(FacePaste(box=box, crop=crop, mask=mask))
    return out, pastes


def _restore_aligned(
    image: np.ndarray,
    out: np.ndarray,
    box: FaceBox,
    scale: int,
    gfpgan: FaceRestorer,
    face_crop_scale: float,
) -> FacePaste:
    """Align to FFHQ, restore, paste back into `out` in place; the paste weight is reported
    over the box's square crop, as for unaligned faces."""
    from edit3d.refine.face_align import align_face, paste_face

    aligned, affine = align_face(image, np.asarray(box.landmarks), gfpgan.size)
    weight = paste_face(out, gfpgan.restore(aligned), affine, scale)
    crop = square_crop(box, face_crop_scale)
    padded = np.pad(weight, crop[2] * scale)  # the crop may extend past the image
    x0, y0 = (crop[0] + crop[2]) * scale, (crop[1] + crop[2]) * scale
    side = crop[2] * scale
    return FacePaste(box=box, crop=crop, mask=padded[y0 : y0 + side, x0 : x0 + side].copy())


def square_crop(box: FaceBox, crop_scale: float) -> tuple[int, int, int]:
    """(x0, y0, side) in integer input pixels: a square centred on the box."""
    side = max(int(np.ceil(max(box.width, box.height) * crop_scale)), 1)
    cx, cy = (box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0
    return int(np.floor(cx - side / 2.0)), int(np.floor(cy - side / 2.0)), side


def face_paste_mask(box: FaceBox, crop: tuple[int, int, int], scale: int) -> np.ndarray:
    """[side*scale]^2 weights: 1 inside the box, smooth fall to 0 at the crop border."""
    x0, y0, side = crop
    size = side * scale
    ramp_x = _ramp(size, (box.x0 - x0) * scale, (box.x1 - x0) * scale)
    ramp_y = _ramp(size, (box.y0 - y0) * scale, (box.y1 - y0) * scale)
    return np.outer(ramp_y, ramp_x).astype(np.float32)


def _ramp(size: int, inner0: float, inner1: float) -> np.ndarray:
    """1 on [inner0, inner1], rising from 0 at 0 and falling to 0 at `size` (smoothstep)."""
    centers = np.arange(size, dtype=np.float64) + 0.5
    rise = np.ones(size) if inner0 <= 0 else centers / inner0
    fall = np.ones(size) if inner1 >= size else (size - centers) / (size - inner1)
    t = np.clip(np.minimum(rise, fall), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _crop_padded(image: np.ndarray, crop: tuple[int, int, int]) -> np.ndarray:
    """The square crop; pixels outside the image repeat its border."""
    x0, y0, side = crop
    height, width = image.shape[:2]
    rows = np.clip(np.arange(y0, y0 + side), 0, height - 1)
    cols = np.clip(np.arange(x0, x0 + side), 0, width - 1)
    return image[rows[:, None], cols[None, :]]


def _resize_square(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    if image.shape[0] == side:
        return image
    interpolation = cv2.INTER_CUBIC if side > image.shape[0] else cv2.INTER_AREA
    resized = cv2.resize(image, (side, side), interpolation=interpolation)
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def _paste(
    out: np.ndarray,
    restored: np.ndarray,
    mask: np.ndarray,
    crop: tuple[int, int, int],
    scale: int,
) -> None:
    """Blends `restored` into `out` in place where the crop overlaps the image."""
    x0, y0, side = crop
    size = side * scale
    ox0, oy0 = x0 * scale, y0 * scale
    height, width = out.shape[:2]
    dx0, dy0 = max(ox0, 0), max(oy0, 0)
    dx1, dy1 = min(ox0 + size, width), min(oy0 + size, height)
    if dx1 <= dx0 or dy1 <= dy0:
        return
    src = (slice(dy0 - oy0, dy1 - oy0), slice(dx0 - ox0, dx1 - ox0))
    weight = mask[src][..., None]
    region = out[dy0:dy1, dx0:dx1]
    out[dy0:dy1, dx0:dx1] = region * (1.0 - weight) + restored[src] * weight
