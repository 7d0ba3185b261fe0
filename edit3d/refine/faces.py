"""Face detection for the face path of the super-resolution stage.

Any object with ``detect(image) -> list[FaceBox]`` is a `FaceDetector`. The default,
`YuNetFaceDetector` (registered model "yunet-face"), finds boxes with five landmarks.
`FixedFaceDetector` returns given boxes: for callers that already know where faces are,
and for tests; `NoFaceDetector` finds none (the tiny profile's stand-in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box in pixels of the image it was found in (x right, y down)."""

    x0: float
    """Left edge."""
    y0: float
    """Top edge."""
    x1: float
    """Right edge (exclusive)."""
    y1: float
    """Bottom edge (exclusive)."""
    score: float = 1.0
    """Detector confidence (detector-specific scale)."""
    landmarks: tuple[tuple[float, float], ...] | None = None
    """Five points (left eye, right eye, nose tip, left and right mouth corner; image left
    first; OpenCV pixel coordinates) from a landmark detector: the face is then aligned to
    FFHQ's template for GFPGAN (`edit3d.refine.face_align`). None: a square crop of the box."""

    def __post_init__(self) -> None:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise ValueError(f"face box must have positive size, got {self}")
        if self.landmarks is not None and np.shape(self.landmarks) != (5, 2):
            raise ValueError(f"landmarks must be five (x, y) points, got {self.landmarks}")

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


class FaceDetector(Protocol):
    """Finds faces in an image [H, W, 3] float32 in [0, 1]."""

    def detect(self, image: np.ndarray) -> list[FaceBox]: ...


class FixedFaceDetector:
    """Returns the same boxes for every image (or per image shape, if given a mapping)."""

    def __init__(self, boxes: Sequence[FaceBox] | Mapping[tuple[int, int], Sequence[FaceBox]]):
        self._boxes = boxes

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        if isinstance(self._boxes, Mapping):
            return list(self._boxes.get((image.shape[0], image.shape[1]), ()))
        return list(self._boxes)


class NoFaceDetector:
    """Finds no faces: the whole image goes through the general upscaler."""

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return []


class YuNetFaceDetector:
    """OpenCV Zoo's YuNet run by OpenCV's `FaceDetectorYN`: boxes and five landmarks, which
    the face path uses to align faces as GFPGAN expects (`edit3d.refine.face_align`).

    Chosen over facexlib's RetinaFace because it runs in the OpenCV already installed (no
    facexlib/basicsr, whose imports break on this torchvision) from a 230 KB file, and gives
    the same five points. It finds faces of about 10 to 300 px; larger views are searched at
    a reduced size and the results scaled back.
    """

    MAX_SIDE = 640
    """Longest side the network sees (faces above ~300 px are found on the reduced view)."""

    def __init__(
        self, model_path: str, *, score_threshold: float = 0.7, nms_threshold: float = 0.3
    ) -> None:
        import cv2

        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        self._network = cv2.FaceDetectorYN.create(
            str(model_path), "", (320, 320), score_threshold, nms_threshold
        )

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        import cv2

        height, width = image.shape[:2]
        ratio = min(1.0, self.MAX_SIDE / max(height, width))
        size = (max(round(width * ratio), 1), max(round(height * ratio), 1))
        bgr = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        if ratio < 1.0:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        self._network.setInputSize(size)
        _, rows = self._network.detect(bgr)
        if rows is None:
            return []
        return [_face_from_row(row / ratio, float(row[14])) for row in rows]


def _face_from_row(row: np.ndarray, score: float) -> FaceBox:
    """One YuNet row [x, y, w, h, 5 x (x, y), score] as a FaceBox. YuNet's landmark order
    (subject's right eye, left eye, nose, right and left mouth corner) is image-left first,
    the order of FFHQ's template."""
    x, y, w, h = (float(v) for v in row[:4])
    points = tuple((float(row[4 + 2 * k]), float(row[5 + 2 * k])) for k in range(5))
    return FaceBox(x, y, x + max(w, 1e-3), y + max(h, 1e-3), score=score, landmarks=points)
