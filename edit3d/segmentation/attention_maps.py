"""Turning patch-grid attention maps into image-sized heatmaps and binary regions.

The post-processing follows LAVIS's `getAttMap` so that the 0.6 threshold of the paper
(Sec. 4.1) means the same thing here: min-max normalise, bicubic up to the image size,
Gaussian blur with sigma = 0.02 * max(H, W), min-max normalise again.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

BLUR_SIGMA_FRACTION = 0.02
"""LAVIS blurs the upsampled map with sigma = 0.02 * the image's long side."""


def normalize_min_max(values: np.ndarray) -> np.ndarray:
    """Shift to a minimum of 0 and scale to a maximum of 1.

    Divides only when the range is positive: tiny random models produce maps of ~1e-15 and
    a constant map must stay constant (all zeros) rather than become NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    shifted = values - values.min()
    peak = shifted.max()
    if peak > 0:
        shifted = shifted / peak
    return shifted


def upsample_bicubic(patch_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of a [h, w] map to [height, width] (values may overshoot slightly)."""
    tensor = torch.as_tensor(np.asarray(patch_map, dtype=np.float64))[None, None]
    resized = F.interpolate(tensor, size=(height, width), mode="bicubic", align_corners=False)
    return resized[0, 0].numpy()


def heatmap_from_patches(
    patch_map: np.ndarray,
    height: int,
    width: int,
    *,
    blur_sigma_fraction: float = BLUR_SIGMA_FRACTION,
) -> np.ndarray:
    """LAVIS post-processing of one patch-grid map: an image-sized heatmap in [0, 1].

    patch_map: [h, w] non-negative relevance per image patch. Returns float32 [height, width].
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if blur_sigma_fraction < 0:
        raise ValueError(f"blur_sigma_fraction must be >= 0, got {blur_sigma_fraction}")
    heatmap = normalize_min_max(patch_map)
    heatmap = upsample_bicubic(heatmap, height, width)
    sigma = blur_sigma_fraction * max(height, width)
    if sigma > 0:
        heatmap = gaussian_filter(heatmap, sigma=sigma)
    return normalize_min_max(heatmap).astype(np.float32)


def threshold_heatmap(heatmap: np.ndarray, threshold: float = 0.6) -> np.ndarray:
    """The region a heatmap points at: bool [H, W], True where heatmap >= threshold."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return np.asarray(heatmap) >= threshold
