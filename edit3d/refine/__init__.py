"""Super-resolution fine-tune of an edited field (paper Sec. 3.3).

Names are imported on first use (PEP 562), so `edit3d refine --help` and the other
commands that only register parsers do not pay for torch.
"""

from __future__ import annotations

from edit3d.lazy import lazy_exports

_EXPORTS = {
    "FaceBox": "edit3d.refine.faces",
    "FaceDetector": "edit3d.refine.faces",
    "FixedFaceDetector": "edit3d.refine.faces",
    "YuNetFaceDetector": "edit3d.refine.faces",
    "RefineConfig": "edit3d.refine.finetune",
    "RefineResult": "edit3d.refine.finetune",
    "finetune_super_resolution": "edit3d.refine.finetune",
    "load_targets": "edit3d.refine.finetune",
    "make_targets": "edit3d.refine.finetune",
    "save_targets": "edit3d.refine.finetune",
    "upscale_view": "edit3d.refine.upscale",
    "upscale_view_with_faces": "edit3d.refine.upscale",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("edit3d.refine", _EXPORTS)
