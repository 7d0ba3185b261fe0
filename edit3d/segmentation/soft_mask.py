"""Gaussian-smoothed mask edges so fused targets have no visible seam (paper Sec. 3.2)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

REFERENCE_SIZE = 512
"""Edge widths are given in pixels at this long side and scale with the image."""

GAUSSIAN_TRUNCATE = 4.0
"""Kernel radius in sigmas: beyond it the soft mask is exactly 0 or exactly 1."""


def edge_sigma_for(height: int, width: int, sigma_px: float) -> float:
    """Sigma in pixels of this image for an edge width of `sigma_px` at REFERENCE_SIZE."""
    if sigma_px < 0:
        raise ValueError(f"sigma_px must be >= 0, got {sigma_px}")
    return sigma_px * max(height, width) / REFERENCE_SIZE


def soften_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """float32 [H, W] in [0, 1]: `mask` with Gaussian-smoothed edges.

    Pixels farther than GAUSSIAN_TRUNCATE * sigma from the edge keep their exact value
    (0.0 or 1.0), so a fused target equals the pre-render exactly away from the edit.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    hard = np.asarray(mask, dtype=bool)
    if sigma == 0 or hard.all() or not hard.any():
        return hard.astype(np.float32)
    blurred = gaussian_filter(hard.astype(np.float64), sigma=sigma, truncate=GAUSSIAN_TRUNCATE)
    soft = np.clip(blurred, 0.0, 1.0)
    # Kernel weights sum to 1 only up to rounding: snap the interior to exact ones.
    soft[soft > 1.0 - 1e-6] = 1.0
    soft[soft < 1e-6] = 0.0
    return soft.astype(np.float32)
