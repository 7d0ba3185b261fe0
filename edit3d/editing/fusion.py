"""Fusing an edited view with its pre-render through a soft mask (paper Sec. 3.2)."""

from __future__ import annotations

import numpy as np


def fuse(edited: np.ndarray, prerendered: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """edited · M + prerendered · (1 − M), per pixel; M = None means edit everywhere.

    Images are float [H, W, 3] in [0, 1] of one size; the mask is float [H, W] in [0, 1] of
    that size. Smoothing the mask's edges is the mask producer's job.
    """
    edited = np.asarray(edited, dtype=np.float32)
    prerendered = np.asarray(prerendered, dtype=np.float32)
    if edited.shape != prerendered.shape or edited.ndim != 3 or edited.shape[2] != 3:
        raise ValueError(
            f"edited and prerendered must both be [H, W, 3] of one size, got {edited.shape} "
            f"and {prerendered.shape}"
        )
    if mask is None:
        return edited.copy()
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != edited.shape[:2]:
        raise ValueError(f"mask must be [H, W] = {edited.shape[:2]}, got {mask.shape}")
    weight = np.clip(mask, 0.0, 1.0)[..., None]
    return (edited * weight + prerendered * (1.0 - weight)).astype(np.float32)
