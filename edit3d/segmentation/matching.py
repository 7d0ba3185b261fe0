"""Choosing SAM masks for attention regions, and combining edit/keep masks (paper Sec. 3.2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerUp:
    """The second-best SAM mask for a query, so a user can judge how clear the choice was."""

    index: int
    """Index of the mask in the SAM proposal list."""
    iou: float
    """Its IoU with the thresholded attention map."""


@dataclass(frozen=True)
class MaskMatch:
    """The segment chosen for one query."""

    mask: np.ndarray
    """bool [H, W]: the chosen SAM mask, or the thresholded attention map on fallback."""
    iou: float
    """IoU between the chosen SAM mask and the thresholded map (the best IoU found)."""
    index: int | None
    """Index of the chosen SAM mask; None when the thresholded map was used instead."""
    runner_up: RunnerUp | None
    """The second-best SAM mask, if there were at least two proposals."""
    warning: str | None = None
    """Set when no SAM mask matched well enough and the thresholded map was used."""

    @property
    def fallback(self) -> bool:
        return self.index is None


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0 when both are empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 0.0
    return float(np.logical_and(a, b).sum() / union)


def match_sam_mask(
    region: np.ndarray,
    sam_masks: Sequence[np.ndarray],
    *,
    min_iou: float = 0.0,
    query: str = "",
) -> MaskMatch:
    """The SAM mask with the largest IoU against `region` (the thresholded attention map).

    When no SAM mask reaches an IoU above `min_iou` (or there are none), the region itself
    is returned with a warning: a coarse mask is better than editing the wrong object.
    """
    if min_iou < 0 or min_iou >= 1:
        raise ValueError(f"min_iou must be in [0, 1), got {min_iou}")
    region = np.asarray(region, dtype=bool)
    ious = np.array([mask_iou(region, m) for m in sam_masks], dtype=np.float64)
    order = np.argsort(-ious, kind="stable")
    runner_up = RunnerUp(int(order[1]), float(ious[order[1]])) if len(order) > 1 else None
    best_iou = float(ious[order[0]]) if len(order) else 0.0
    if best_iou <= min_iou:
        warning = (
            f"query {query!r}: no SAM mask overlaps its attention region "
            f"(best IoU {best_iou:.3f} <= min_iou {min_iou}); using the thresholded attention map"
        )
        log.warning(warning)
        return MaskMatch(region.copy(), best_iou, None, runner_up, warning)
    best = int(order[0])
    return MaskMatch(np.asarray(sam_masks[best], dtype=bool).copy(), best_iou, best, runner_up)


def union_masks(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """bool [H, W]: pixels in any of `masks` (all False for none)."""
    result = np.zeros(shape, dtype=bool)
    for mask in masks:
        result |= np.asarray(mask, dtype=bool)
    return result


def combine_edit_mask(
    edit_masks: Sequence[np.ndarray], keep_masks: Sequence[np.ndarray], shape: tuple[int, int]
) -> np.ndarray:
    """The region to edit: (union of edit masks, or everything if none) minus the keep masks.

    With only keep queries this is the paper's inverse mode, M = 1 - M_keep, used for
    additive edits ("give him a cowboy hat") whose target does not exist in the pre-render.
    """
    edit = union_masks(edit_masks, shape) if edit_masks else np.ones(shape, dtype=bool)
    return edit & ~union_masks(keep_masks, shape)
