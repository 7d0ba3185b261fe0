"""Super-resolution fine-tune of an edited field (paper Sec. 3.3)."""

from edit3d.refine.faces import FaceBox, FaceDetector, FixedFaceDetector, HaarFaceDetector
from edit3d.refine.finetune import (
    RefineConfig,
    RefineResult,
    finetune_super_resolution,
    load_targets,
    make_targets,
    save_targets,
)
from edit3d.refine.upscale import upscale_view, upscale_view_with_faces

__all__ = [
    "FaceBox",
    "FaceDetector",
    "FixedFaceDetector",
    "HaarFaceDetector",
    "RefineConfig",
    "RefineResult",
    "finetune_super_resolution",
    "load_targets",
    "make_targets",
    "save_targets",
    "upscale_view",
    "upscale_view_with_faces",
]
