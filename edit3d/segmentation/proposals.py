"""Class-agnostic mask proposals for a whole image with SAM's automatic mask generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SamMaskConfig:
    """Settings of `segment_anything.SamAutomaticMaskGenerator`."""

    points_per_side: int = 32
    """Prompt grid density; masks cost grows with its square (32 -> 1024 prompts)."""
    pred_iou_thresh: float = 0.88
    """Drop masks whose predicted quality is below this (random tiny weights need 0)."""
    stability_score_thresh: float = 0.95
    """Drop masks that change under threshold shifts (random tiny weights need 0)."""
    points_per_batch: int = 64
    """Prompts decoded together; lower it to save GPU memory."""
    min_mask_region_area: int = 0
    """Remove holes/islands smaller than this many pixels (needs OpenCV); 0 keeps all."""

    def __post_init__(self) -> None:
        if self.points_per_side < 1:
            raise ValueError(f"points_per_side must be >= 1, got {self.points_per_side}")
        for name in ("pred_iou_thresh", "stability_score_thresh"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


TINY_SAM_MASKS = SamMaskConfig(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
"""Proposal settings for the tiny random SAM: its quality scores are meaningless."""


class SamMaskProposer:
    """Every mask SAM finds in an image, as a list of bool [H, W] arrays."""

    def __init__(self, sam: Any, config: SamMaskConfig | None = None) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        self.config = config or SamMaskConfig()
        self._generator = SamAutomaticMaskGenerator(
            sam,
            points_per_side=self.config.points_per_side,
            points_per_batch=self.config.points_per_batch,
            pred_iou_thresh=self.config.pred_iou_thresh,
            stability_score_thresh=self.config.stability_score_thresh,
            min_mask_region_area=self.config.min_mask_region_area,
        )

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
        as_bytes = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        records = self._generator.generate(as_bytes)
        return [np.asarray(r["segmentation"], dtype=bool) for r in records]
