"""Release-file loaders on checkpoints written in the publishers' exact layouts.

Each fixture writes what the publisher ships (file format, top-level key, parameter names
and shapes at the published size) filled with seeded random numbers, and the registry's
real loader path (`load_model(name, local_path=...)`) loads it and runs one forward pass.
Hub families are covered the same way in test_hub_cache.py. Full-size networks that take
long on a CPU are marked `slow`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edit3d.models.registry import load_model


def _conv(generator: torch.Generator, out_ch: int, in_ch: int) -> dict[str, torch.Tensor]:
    weight = torch.randn(out_ch, in_ch, 3, 3, generator=generator) * 0.02
    return {"weight": weight, "bias": torch.zeros(out_ch)}


def realesrgan_x4plus_state(feat: int = 64, blocks: int = 23, grow: int = 32) -> dict:
    """RealESRGAN_x4plus.pth's contents: {"params_ema": state dict} with basicsr RRDBNet's
    parameter names (conv_first, body.N.rdbK.convJ, conv_body, conv_up1/2, conv_hr,
    conv_last), 64 features, 23 blocks, growth 32."""
    generator = torch.Generator().manual_seed(0)
    layers = {"conv_first": _conv(generator, feat, 3)}
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for j in range(1, 6):
                out_ch = feat if j == 5 else grow
                layers[f"body.{block}.rdb{rdb}.conv{j}"] = _conv(
                    generator, out_ch, feat + (j - 1) * grow
                )
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        layers[name] = _conv(generator, feat, feat)
    layers["conv_last"] = _conv(generator, 3, feat)
    state = {f"{layer}.{kind}": t for layer, ts in layers.items() for kind, t in ts.items()}
    return {"params_ema": state}


def _parameter_total(tensors: object) -> float:
    return float(sum(t.double().abs().sum() for t in tensors))


@pytest.mark.parametrize(
    "blocks", [pytest.param(2, id="2-blocks"), pytest.param(23, id="full", marks=pytest.mark.slow)]
)
def test_realesrgan_x4plus_published_checkpoint(tmp_path: Path, blocks: int) -> None:
    published = realesrgan_x4plus_state(blocks=blocks)
    path = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save(published, path)
    resolver = load_model("realesrgan-x4plus", local_path=path)
    assert resolver.scale == 4
    # Every published tensor arrived in the network (same count, same values).
    parameters = list(resolver.network.state_dict().values())
    assert len(parameters) == len(published["params_ema"])
    assert _parameter_total(parameters) == pytest.approx(
        _parameter_total(published["params_ema"].values()), rel=1e-9
    )
    image = np.random.default_rng(0).random((12, 16, 3), dtype=np.float32)
    assert resolver.upscale(image).shape == (48, 64, 3)


@pytest.mark.slow
def test_sam_vit_b_published_checkpoint(tmp_path: Path) -> None:
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), path)  # a bare state dict
    sam = load_model("sam-vit-b", local_path=path)
    # Normalisation and input size come from the code, not the file: SAM's pixel statistics
    # on 0-255 RGB and 1024 px inputs.
    assert sam.pixel_mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])
    assert sam.pixel_std.flatten().tolist() == pytest.approx([58.395, 57.12, 57.375])
    assert sam.image_encoder.img_size == 1024
    with torch.no_grad():
        embedding = sam.image_encoder(torch.zeros(1, 3, 1024, 1024))
    assert embedding.shape == (1, 256, 64, 64)


@pytest.mark.slow
def test_gfpgan_v14_published_checkpoint(tmp_path: Path) -> None:
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": GFPGAN().state_dict()}, path)  # GFPGANv1Clean, 512 px
    restorer = load_model("gfpgan-v1.4", local_path=path)
    assert restorer.size == 512
    face = np.random.default_rng(0).random((96, 96, 3), dtype=np.float32)
    assert restorer.restore(face).shape == (96, 96, 3)
