"""TargetStore: rays sample the pixel they say they sample, at any resolution per view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edit3d.field.targets import TargetStore


def _coded_image(view: int, height: int, width: int) -> np.ndarray:
    """Pixel (y, x) of view v holds (v, y, x) scaled into [0, 1]: a sample names its source."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([np.full_like(ys, view) / 10.0, ys / 100.0, xs / 100.0], -1).astype(np.float32)


def _decode(rgb: torch.Tensor) -> np.ndarray:
    return np.round(rgb.numpy() * np.array([10.0, 100.0, 100.0])).astype(int)


def test_samples_carry_their_own_pixel_colour() -> None:
    store = TargetStore({"a.png": _coded_image(0, 6, 8), "b.png": _coded_image(1, 5, 3)})
    view, coords, rgb = store.sample(4000, torch.Generator().manual_seed(0))
    decoded = _decode(rgb)
    np.testing.assert_array_equal(decoded[:, 0], view.numpy())
    np.testing.assert_array_equal(decoded[:, 1:], (coords.numpy() - 0.5).astype(int))
    # every pixel of the small view is reachable and none outside it is drawn
    small = decoded[decoded[:, 0] == 1]
    assert small[:, 1].max() == 4 and small[:, 2].max() == 2
    assert len({tuple(p) for p in small[:, 1:]}) == 15


def test_replace_same_size_and_other_size() -> None:
    store = TargetStore({"a.png": _coded_image(0, 4, 4), "b.png": _coded_image(1, 4, 4)})
    version = store.layout_version
    store.replace("a.png", np.full((4, 4, 3), 0.7, np.float32))
    assert store.layout_version == version  # in place
    store.replace("b.png", _coded_image(1, 9, 7))
    assert store.layout_version == version + 1 and store.size_of("b.png") == (9, 7)
    view, coords, rgb = store.sample(3000, torch.Generator().manual_seed(1))
    a = view.numpy() == 0
    np.testing.assert_allclose(rgb.numpy()[a], 0.7)
    decoded = _decode(rgb[~a])
    np.testing.assert_array_equal(decoded[:, 1:], (coords.numpy()[~a] - 0.5).astype(int))
    assert decoded[:, 1].max() == 8
    assert store.replaced == {"a.png", "b.png"}


def test_state_round_trip_restores_replaced_targets() -> None:
    images = {"a.png": _coded_image(0, 4, 4), "b.png": _coded_image(1, 4, 4)}
    store = TargetStore(images)
    store.replace("b.png", np.zeros((2, 3, 3), np.float32))
    fresh = TargetStore(images)
    fresh.load_state_dict(store.state_dict())
    assert fresh.size_of("b.png") == (2, 3)
    np.testing.assert_array_equal(fresh["b.png"], 0.0)
    np.testing.assert_array_equal(fresh["a.png"], images["a.png"])


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.full((2, 2, 3), np.nan)])
def test_rejects_bad_images(bad: np.ndarray) -> None:
    store = TargetStore({"a.png": np.zeros((4, 4, 3), np.float32)})
    with pytest.raises(ValueError, match=r"a\.png"):
        store.replace("a.png", bad)
    with pytest.raises(ValueError, match="name"):
        store.replace("nope.png", np.zeros((4, 4, 3)))


def test_patches_are_whole_squares_inside_one_view() -> None:
    store = TargetStore({"a.png": _coded_image(0, 40, 36), "b.png": _coded_image(1, 33, 50)})
    size, count = 32, 60
    view, coords, rgb = store.sample_patches(count, size, torch.Generator().manual_seed(2))
    assert view.shape == (count * size * size,)
    decoded = _decode(rgb).reshape(count, size, size, 3)
    yx = (coords.numpy() - 0.5).astype(int).reshape(count, size, size, 2)
    views = view.numpy().reshape(count, size, size)
    # one view per patch, the pixel each sample names is the one it carries
    assert (views == views[:, :1, :1]).all()
    np.testing.assert_array_equal(decoded[..., 0], views)
    np.testing.assert_array_equal(decoded[..., 1:], yx)
    # row-major squares of consecutive pixels, wholly inside their view
    top, left = yx[:, 0, 0, 0], yx[:, 0, 0, 1]
    rows, cols = np.mgrid[0:size, 0:size]
    np.testing.assert_array_equal(yx[..., 0], top[:, None, None] + rows)
    np.testing.assert_array_equal(yx[..., 1], left[:, None, None] + cols)
    heights = np.where(views[:, 0, 0] == 0, 40, 33)
    widths = np.where(views[:, 0, 0] == 0, 36, 50)
    assert (top >= 0).all() and (top + size <= heights).all()
    assert (left >= 0).all() and (left + size <= widths).all()
    assert set(views[:, 0, 0]) == {0, 1}


def test_patches_refuse_a_view_smaller_than_the_patch() -> None:
    store = TargetStore({"a.png": _coded_image(0, 40, 40), "b.png": _coded_image(1, 20, 50)})
    with pytest.raises(ValueError, match=r"patch_size 32 does not fit.*b\.png"):
        store.sample_patches(1, 32, torch.Generator().manual_seed(0))
