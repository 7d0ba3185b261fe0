"""LPIPS through the registry: the real loader reads the pinned backbone file, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from edit3d.cli import main as cli_main
from edit3d.models import lpips, registry, sources
from edit3d.models.registry import load_model

RELU_OUTPUTS = (1, 4, 7, 9, 11)
"""AlexNet `features` layers whose outputs LPIPS "alex" compares."""


@pytest.fixture
def backbone_file(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A torchvision AlexNet with seeded random weights saved where the loader looks."""
    torch.manual_seed(5)
    alexnet = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path / sources.ALEXNET_IMAGENET.filename
    torch.save(alexnet.state_dict(), path)
    return path, alexnet


def _lpips_by_hand(alexnet: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 from its definition: scaled inputs, unit-normalised channel features at five
    ReLUs, squared differences weighted by the published linear layers, spatial means summed."""
    linear = torch.load(lpips.packaged_linear_layers(), weights_only=True, map_location="cpu")
    shift = torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None]
    scale = torch.tensor([0.458, 0.448, 0.450])[None, :, None, None]
    feats = []
    for image in (a, b):
        x = ((image * 2 - 1).clamp(-1, 1) - shift) / scale
        outs = []
        for i, layer in enumerate(alexnet.features[:12]):
            x = layer(x)
            if i in RELU_OUTPUTS:
                outs.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        feats.append(outs)
    total = torch.zeros(a.shape[0])
    for k, (fa, fb) in enumerate(zip(*feats, strict=True)):
        weight = linear[f"lin{k}.model.1.weight"]
        total += ((fa - fb) ** 2 * weight.reshape(1, -1, 1, 1)).sum(1).mean((1, 2))
    return total.mean()


def test_real_loader_is_lpips_alex_with_the_pinned_backbone(backbone_file) -> None:
    path, alexnet = backbone_file
    distance = load_model(lpips.LPIPS_ALEX, local_path=path)
    generator = torch.Generator().manual_seed(0)
    a = torch.rand((3, 3, 32, 32), generator=generator)
    b = (a + 0.2 * torch.rand((3, 3, 32, 32), generator=generator)).clamp(0, 1)
    with torch.no_grad():
        expected = _lpips_by_hand(alexnet, a, b)
        got = distance(a, b)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert float(distance(a, a)) == pytest.approx(0.0, abs=1e-6)
    # a folder holding the file works too, and the weights are fixed
    folder_loaded = lpips.load_real(path.parent)
    assert float(folder_loaded(a, b)) == pytest.approx(float(got), rel=1e-6)
    assert not any(p.requires_grad for p in distance.parameters())


def test_gradients_reach_the_rendered_image_only(backbone_file) -> None:
    distance = lpips.load_real(backbone_file[0])
    rendered = torch.rand((2, 3, 32, 32), requires_grad=True)
    distance(rendered, torch.rand((2, 3, 32, 32))).backward()
    assert rendered.grad is not None and rendered.grad.abs().sum() > 0


def test_tampered_linear_layers_are_refused(
    backbone_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = tmp_path / "alex.pth"
    shutil.copy(lpips.packaged_linear_layers(), tampered)
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    monkeypatch.setattr(lpips, "packaged_linear_layers", lambda: tampered)
    with pytest.raises(ValueError, match="SHA-256"):
        lpips.load_real(backbone_file[0])


def test_inputs_are_checked() -> None:
    distance = load_model(lpips.LPIPS_ALEX, "tiny")
    with pytest.raises(ValueError, match="at least 31"):
        distance(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        distance(torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32))


def test_listed_with_its_pinned_source_and_missing_without_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.delenv(registry.model_path_env_var(lpips.LPIPS_ALEX), raising=False)
    assert cli_main(["models", "list"]) == 0
    row = next(
        line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("lpips")
    )
    assert row[:5] == [
        "lpips-alex",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "sha256:7be5be79",
        "missing",
        "models-dir",
    ]
    with pytest.raises(registry.ModelNotAvailable, match="lpips-alex"):
        load_model(lpips.LPIPS_ALEX)
