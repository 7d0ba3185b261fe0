"""CLIP directional similarity and CLIP text-image similarity (paper Sec. 4.3).

Directional similarity of an edit (Gal et al., as used by InstructPix2Pix, IN2N, Edit3D):

    cos( E_img(after) - E_img(before),  E_txt(caption_after) - E_txt(caption_before) )

with every embedding L2-normalised first; one value per view pair, averaged over views.
A figure means something only next to the CLIP model that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class ClipLike(Protocol):
    """What the metrics need from a CLIP model (`edit3d.models.clip.ClipEncoder`)."""

    name: str

    def image_features(self, images: Sequence[np.ndarray]) -> np.ndarray: ...

    def text_features(self, texts: Sequence[str]) -> np.ndarray: ...


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def directional_similarities(
    image_before: np.ndarray,
    image_after: np.ndarray,
    text_before: np.ndarray,
    text_after: np.ndarray,
) -> np.ndarray:
    """Per-view directional cosines from embeddings.

    image_before/after: [N, D] image embeddings of the same N views before/after the edit;
    text_before/after: [D] (or [N, D]) caption embeddings. Returns [N] in [-1, 1].
    """
    image_before, image_after = np.atleast_2d(image_before), np.atleast_2d(image_after)
    if image_before.shape != image_after.shape:
        raise ValueError(
            f"image_after must match image_before's shape {image_before.shape}, "
            f"got {image_after.shape}"
        )
    image_direction = _unit(image_after) - _unit(image_before)
    text_direction = _unit(text_after) - _unit(text_before)
    return np.sum(_unit(image_direction) * _unit(text_direction), axis=-1)


def clip_directional_similarity(
    images_before: Sequence[np.ndarray],
    images_after: Sequence[np.ndarray],
    caption_before: str,
    caption_after: str,
    clip: ClipLike,
) -> float:
    """Mean CLIP directional similarity over view pairs (images [H, W, 3] in [0, 1])."""
    if len(images_before) != len(images_after) or not images_before:
        raise ValueError(
            "images_before and images_after must be the same non-zero number of views, got "
            f"{len(images_before)} and {len(images_after)}"
        )
    texts = clip.text_features([caption_before, caption_after])
    scores = directional_similarities(
        clip.image_features(images_before), clip.image_features(images_after), texts[0], texts[1]
    )
    return float(np.mean(scores))


def clip_text_image_similarity(images: Sequence[np.ndarray], caption: str, clip: ClipLike) -> float:
    """Mean cosine between each image's embedding and the caption's."""
    if not images:
        raise ValueError("images must not be empty")
    image = _unit(clip.image_features(images))
    text = _unit(clip.text_features([caption]))[0]
    return float(np.mean(image @ text))
