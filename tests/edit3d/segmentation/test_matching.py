"""Threshold, SAM matching, union and inverse mode on injected maps and masks (exact)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edit3d.segmentation.attention_maps import (
    heatmap_from_patches,
    normalize_min_max,
    threshold_heatmap,
)
from edit3d.segmentation.matching import combine_edit_mask, mask_iou, match_sam_mask

H, W = 32, 48


def box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


OBJECT_A = box(2, 2, 14, 14)
OBJECT_B = box(16, 20, 30, 40)
OBJECT_C = box(2, 30, 12, 46)


def bump(center: tuple[float, float], sigma: float = 4.0) -> np.ndarray:
    rows, cols = np.mgrid[0:H, 0:W]
    return np.exp(-((rows - center[0]) ** 2 + (cols - center[1]) ** 2) / (2 * sigma**2))


def test_normalize_keeps_a_constant_map_at_zero_instead_of_nan():
    assert np.array_equal(normalize_min_max(np.full((4, 4), 1e-15)), np.zeros((4, 4)))
    scaled = normalize_min_max(np.array([[2.0, 4.0], [6.0, 10.0]]))
    assert np.allclose(scaled, [[0.0, 0.25], [0.5, 1.0]])


def test_heatmap_post_processing_is_lavis_like():
    patches = np.zeros((6, 6))
    patches[4, 1] = 1e-9  # tiny values must not vanish: only min-max matters
    heatmap = heatmap_from_patches(patches, 60, 60)
    assert heatmap.shape == (60, 60)
    assert heatmap.min() == 0.0 and heatmap.max() == pytest.approx(1.0)
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert abs(peak[0] - 45) <= 3 and abs(peak[1] - 15) <= 3  # patch (4, 1) centre


def test_threshold_is_inclusive_at_the_boundary():
    heatmap = np.array([[0.59, 0.6, 0.61]], dtype=np.float32)
    assert threshold_heatmap(heatmap, 0.6).tolist() == [[False, True, True]]
    with pytest.raises(ValueError, match="threshold"):
        threshold_heatmap(heatmap, 1.5)


def test_a_map_peaked_inside_b_selects_b_with_a_runner_up():
    region = threshold_heatmap(bump((23, 30)), 0.6)
    match = match_sam_mask(region, [OBJECT_A, OBJECT_B, OBJECT_C], query="b")
    assert match.index == 1
    assert np.array_equal(match.mask, OBJECT_B)
    assert match.iou == pytest.approx(mask_iou(region, OBJECT_B))
    assert 0 < match.iou < 1
    assert match.runner_up is not None and match.runner_up.iou == 0.0
    assert not match.fallback and match.warning is None


def test_runner_up_reports_the_second_best_overlap():
    half_b = box(16, 20, 30, 30)
    match = match_sam_mask(OBJECT_B, [OBJECT_A, half_b, OBJECT_B])
    assert match.index == 2 and match.iou == 1.0
    assert match.runner_up.index == 1
    assert match.runner_up.iou == pytest.approx(0.5)


def test_no_overlap_falls_back_to_the_thresholded_map_with_a_warning(caplog):
    region = threshold_heatmap(bump((24, 8)), 0.6)  # between A and B, touching neither
    with caplog.at_level(logging.WARNING):
        match = match_sam_mask(region, [OBJECT_A, OBJECT_B, OBJECT_C], query="lamp")
    assert match.fallback and match.index is None
    assert np.array_equal(match.mask, region)
    assert "lamp" in match.warning and "lamp" in caplog.text


def test_min_iou_turns_weak_matches_into_fallbacks():
    sliver = box(16, 20, 17, 21)
    match = match_sam_mask(OBJECT_B, [sliver], min_iou=0.1)
    assert match.fallback and np.array_equal(match.mask, OBJECT_B)


def test_several_edit_queries_give_their_union():
    mask = combine_edit_mask([OBJECT_A, OBJECT_C], [], (H, W))
    assert np.array_equal(mask, OBJECT_A | OBJECT_C)


def test_inverse_mode_is_the_exact_complement_of_the_keep_mask():
    mask = combine_edit_mask([], [OBJECT_B], (H, W))
    assert np.array_equal(mask, ~OBJECT_B)


def test_edit_and_keep_together_edit_only_outside_the_kept_part():
    overlapping_keep = box(20, 0, 32, 48)
    mask = combine_edit_mask([OBJECT_B], [overlapping_keep], (H, W))
    assert np.array_equal(mask, OBJECT_B & ~overlapping_keep)
    assert mask.sum() == (20 - 16) * (40 - 20)
