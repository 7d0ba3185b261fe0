"""Soft mask edges and the fused training target (paper Eq. 3) on injected masks."""

from __future__ import annotations

import numpy as np
import pytest

from edit3d.segmentation.soft_mask import GAUSSIAN_TRUNCATE, edge_sigma_for, soften_mask

H, W = 40, 64
SIGMA = 2.0
RADIUS = int(np.ceil(GAUSSIAN_TRUNCATE * SIGMA))


def object_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[10:30, 20:44] = True
    return mask


def test_edge_sigma_scales_with_the_long_side():
    assert edge_sigma_for(512, 384, 4.0) == pytest.approx(4.0)
    assert edge_sigma_for(768, 1024, 4.0) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="sigma_px"):
        edge_sigma_for(64, 64, -1.0)


def test_soft_mask_is_exact_away_from_the_edge_and_graded_across_it():
    hard = object_mask()
    soft = soften_mask(hard, SIGMA)
    assert soft.dtype == np.float32 and soft.min() >= 0.0 and soft.max() <= 1.0
    interior = np.zeros_like(hard)
    interior[10 + RADIUS : 30 - RADIUS, 20 + RADIUS : 44 - RADIUS] = True
    far_outside = np.ones_like(hard)
    far_outside[10 - RADIUS : 30 + RADIUS, 20 - RADIUS : 44 + RADIUS] = False
    assert np.all(soft[interior] == 1.0)
    assert np.all(soft[far_outside] == 0.0)
    row = soft[20, :32]  # crosses the left edge at column 20
    assert np.all(np.diff(row) >= 0)
    assert 0.3 < row[19] < 0.7 or 0.3 < row[20] < 0.7  # the edge sits mid-ramp
    assert ((row > 0) & (row < 1)).sum() >= 4  # a ramp, not a step


def test_sigma_zero_and_trivial_masks_stay_hard():
    hard = object_mask()
    assert np.array_equal(soften_mask(hard, 0.0), hard.astype(np.float32))
    assert np.array_equal(soften_mask(np.ones((4, 4), bool), 3.0), np.ones((4, 4), np.float32))
    assert np.array_equal(soften_mask(np.zeros((4, 4), bool), 3.0), np.zeros((4, 4), np.float32))


def test_fused_target_equals_prerender_outside_and_edit_inside():
    fusion = pytest.importorskip("edit3d.editing.fusion")
    rng = np.random.default_rng(0)
    prerendered = rng.random((H, W, 3), dtype=np.float32)
    edited = rng.random((H, W, 3), dtype=np.float32)
    soft = soften_mask(object_mask(), SIGMA)
    fused = np.asarray(fusion.fuse(edited, prerendered, soft))
    assert fused.shape == (H, W, 3)
    outside, inside = soft == 0.0, soft == 1.0
    assert outside.sum() > 0 and inside.sum() > 0
    assert np.array_equal(fused[outside], prerendered[outside])
    assert np.array_equal(fused[inside], edited[inside])
    seam = (soft > 0) & (soft < 1)
    expected = edited * soft[..., None] + prerendered * (1 - soft[..., None])
    assert np.allclose(fused[seam], expected[seam], atol=1e-6)


def test_fused_seam_moves_monotonically_from_prerender_to_edit():
    fusion = pytest.importorskip("edit3d.editing.fusion")
    prerendered = np.zeros((H, W, 3), dtype=np.float32)
    edited = np.ones((H, W, 3), dtype=np.float32)
    fused = np.asarray(fusion.fuse(edited, prerendered, soften_mask(object_mask(), SIGMA)))
    row = fused[20, :32, 0]
    assert np.all(np.diff(row) >= 0)
    assert row[0] == 0.0 and row[-1] == 1.0
