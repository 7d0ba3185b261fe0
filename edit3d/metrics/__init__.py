"""Evaluation: CLIP directional and text-image similarity (paper Sec. 4.3), timings."""

from edit3d.metrics.clip_score import (
    clip_directional_similarity,
    clip_text_image_similarity,
    directional_similarities,
)

__all__ = [
    "clip_directional_similarity",
    "clip_text_image_similarity",
    "directional_similarities",
]
