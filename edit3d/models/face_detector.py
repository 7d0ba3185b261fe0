"""The face detector of the refine stage's face path (paper Sec. 3.3).

Registered name:

* ``yunet-face`` -> `edit3d.refine.faces.YuNetFaceDetector` (OpenCV Zoo's YuNet 2023mar,
  boxes with five landmarks for FFHQ alignment)

The tiny profile gives a detector that finds no faces: random weights cannot locate a face,
and a pipeline check has none to restore.
"""

from __future__ import annotations

from pathlib import Path

from edit3d.models import sources
from edit3d.models.registry import ModelSpec, register
from edit3d.refine.faces import NoFaceDetector, YuNetFaceDetector

FACE_DETECTOR = "yunet-face"


def load_real(path: Path, device: str = "cpu") -> YuNetFaceDetector:
    """YuNet from its .onnx file (OpenCV's DNN runs it on the CPU whatever `device` is)."""
    path = Path(path)
    if path.is_dir():
        path = path / sources.YUNET_FACE_2023MAR.filename
    return YuNetFaceDetector(str(path))


def build_tiny(seed: int = 0, device: str = "cpu") -> NoFaceDetector:
    """No network to randomise: the tiny stand-in finds no faces."""
    return NoFaceDetector()


register(
    ModelSpec(
        name=FACE_DETECTOR,
        description="YuNet (OpenCV Zoo): face boxes with five landmarks for GFPGAN alignment",
        source=sources.YUNET_FACE_2023MAR,
        load_real=load_real,
        build_tiny=build_tiny,
    )
)
