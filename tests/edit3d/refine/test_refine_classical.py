"""The classical upscaler that stands in for Real-ESRGAN, alone and in the fine-tune."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edit3d.field import field_from_dataset, get_preset
from edit3d.field.testing import make_tiny_scene
from edit3d.refine.classical import CLASSICAL_UPSCALER_LABEL, LanczosUpscaler
from edit3d.refine.finetune import RefineConfig, finetune_super_resolution, load_sr_networks


def _edge_image() -> np.ndarray:
    image = np.zeros((16, 16, 3), np.float32)
    image[:, 8:] = (0.9, 0.2, 0.1)
    return image


def test_upscales_by_its_factor_and_keeps_flat_regions() -> None:
    upscaled = LanczosUpscaler(scale=4).upscale(_edge_image())
    assert upscaled.shape == (64, 64, 3) and upscaled.dtype == np.float32
    assert upscaled.min() >= 0.0 and upscaled.max() <= 1.0
    # far from the edge both sides keep their colour exactly
    np.testing.assert_allclose(upscaled[:, :12], 0.0, atol=1e-6)
    np.testing.assert_allclose(upscaled[:, 52:], np.broadcast_to((0.9, 0.2, 0.1), (64, 12, 3)),
                               atol=1e-5)


def test_the_unsharp_mask_steepens_edges() -> None:
    plain = LanczosUpscaler(scale=4, sharpen=0.0).upscale(_edge_image())[8, :, 0]
    sharp = LanczosUpscaler(scale=4).upscale(_edge_image())[8, :, 0]
    assert np.max(np.diff(sharp)) > 1.1 * np.max(np.diff(plain))


def test_bad_settings_and_images_are_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        LanczosUpscaler(scale=0)
    with pytest.raises(ValueError, match="sharpen"):
        LanczosUpscaler(sharpen=-1.0)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        LanczosUpscaler().upscale(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="upscaler"):
        RefineConfig(upscaler="bicubic")  # type: ignore[arg-type]


def test_lanczos_targets_need_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from edit3d.models import registry

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a network was loaded: {args}")

    monkeypatch.setattr(registry, "load_model", refuse)
    esrgan, gfpgan, detector = load_sr_networks(RefineConfig(upscaler="lanczos"), "real")
    assert isinstance(esrgan, LanczosUpscaler) and gfpgan is None and detector is None


def test_fine_tune_on_classical_targets(tmp_path) -> None:
    root = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=32).root
    config = dataclasses.replace(get_preset("tiny"), rays_per_batch=256)
    field = field_from_dataset(root, config, "cpu", seed=0)
    refine = RefineConfig(steps=3, render_long_side=16, upscaler="lanczos")
    result = finetune_super_resolution(field, refine, profile="real")
    assert result.render_size == (16, 16) and result.target_size == (64, 64)
    assert result.models == {"esrgan": CLASSICAL_UPSCALER_LABEL, "gfpgan": "none"}
    assert result.faces == 0 and field.step == 3
    view = field.views[0]
    render = field.render(view, width=16, height=16).rgb
    # the targets are the classical upscale of renders, not the dataset images
    target = result.targets[view.name]
    assert target.shape == (64, 64, 3)
    box_down = target.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))
    assert np.abs(box_down - render).mean() < 0.1
