"""Face detection for the face path of the super-resolution stage.

Any object with ``detect(image) -> list[FaceBox]`` is a `FaceDetector`. The default,
`HaarFaceDetector`, uses the frontal-face Haar cascade that ships inside
opencv-python-headless (offline, no download, CPU only). `FixedFaceDetector` returns
given boxes: for callers that already know where faces are, and for tests.
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


class HaarFaceDetector:
    """OpenCV's bundled frontal-face Haar cascade.

    Weaker than a CNN detector on profiles and small faces, but it needs no weights
    download, which keeps the refine stage usable on an offline machine.
    """

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size_fraction: float = 0.05,
    ) -> None:
        import cv2

        path = cv2.data.haarcascades + cascade
        self._classifier = cv2.CascadeClassifier(path)
        if self._classifier.empty():
            raise ValueError(f"cascade: cannot load OpenCV cascade {path!r}")
        if not 1.0 < scale_factor < 2.0:
            raise ValueError(f"scale_factor must be in (1, 2), got {scale_factor}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        import cv2

        gray = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        min_side = max(int(min(gray.shape) * self.min_size_fraction), 8)
        found = self._classifier.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
        )
        return [FaceBox(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in found]
