"""LPIPS, the perceptual term of instruct-nerf2nerf's turn loss (its `in2n` method).

Registered name:

* ``lpips-alex`` -> `PerceptualDistance`: torchmetrics' LPIPS network (the one its
  `LearnedPerceptualImagePatchSimilarity` wraps, as IN2N uses it) with the "alex" backbone.

Where the weights come from: the backbone is torchvision's ImageNet AlexNet, a release file
pinned in `edit3d.models.sources` (`edit3d models fetch lpips-alex`); the five linear layers
are LPIPS v0.1's, shipped inside the torchmetrics package (`lpips_models/alex.pth`) and
checked against their SHA-256 before loading. torchmetrics' public metric would fetch the
backbone through torch.hub when constructed, so the network is built here with a random
backbone that the pinned file then overwrites: nothing is downloaded at construction.

The tiny profile is the same network with seeded random backbone and linear layers
(AlexNet's convolutional stack is only 2.5M parameters): a pipeline check, not a distance.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from edit3d.models import sources
from edit3d.models.registry import ModelSpec, register

LPIPS_ALEX = "lpips-alex"

LINEAR_LAYERS_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
"""SHA-256 of LPIPS v0.1's "alex" linear layers (torchmetrics' `lpips_models/alex.pth`; the
original project publishes them as `LPIPS_v0.1_alex-df73285e.pth`)."""

MIN_PATCH_SIZE = 31
"""Smallest square input AlexNet's five LPIPS stages accept (stride-4 conv, two max pools)."""


class PerceptualDistance(torch.nn.Module):
    """Mean LPIPS between two batches of images, as IN2N computes its loss term."""

    def __init__(self, network: torch.nn.Module, *, name: str) -> None:
        super().__init__()
        self.network = network
        """torchmetrics' LPIPS network; takes images in [-1, 1]."""
        self.name = name
        """Which weights: the registered name, with "(tiny)" for random ones."""
        self.requires_grad_(False)

    def forward(self, rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """rendered, target: [B, 3, H, W] in [0, 1], H and W ≥ `MIN_PATCH_SIZE` → scalar."""
        if rendered.shape != target.shape or rendered.ndim != 4 or rendered.shape[1] != 3:
            raise ValueError(
                f"rendered and target must both be [B, 3, H, W], got {tuple(rendered.shape)} "
                f"and {tuple(target.shape)}"
            )
        if min(rendered.shape[-2:]) < MIN_PATCH_SIZE:
            raise ValueError(
                f"LPIPS needs images of at least {MIN_PATCH_SIZE}×{MIN_PATCH_SIZE} pixels, got "
                f"{tuple(rendered.shape[-2:])}"
            )
        # IN2N maps [0, 1] to [-1, 1] and clamps before the metric.
        scaled = [(image * 2 - 1).clamp(-1, 1) for image in (rendered, target)]
        return self.network(*scaled).mean()


def _lpips_network() -> torch.nn.Module:
    """torchmetrics' LPIPS "alex" network with random backbone and linear layers (offline)."""
    # The module behind LearnedPerceptualImagePatchSimilarity: that class's constructor would
    # download the backbone, this one with pnet_rand=True does not.
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    return _NoTrainLpips(net="alex", pretrained=False, pnet_rand=True)


def packaged_linear_layers() -> Path:
    """The LPIPS linear-layer weights file torchmetrics ships."""
    import torchmetrics.functional.image.lpips as module

    return Path(module.__file__).parent / "lpips_models" / "alex.pth"


def _checked_linear_layers(path: Path) -> dict[str, torch.Tensor]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != LINEAR_LAYERS_SHA256:
        raise ValueError(
            f"LPIPS linear layers at {path} have SHA-256 {digest}, expected "
            f"{LINEAR_LAYERS_SHA256} (LPIPS v0.1 alex): reinstall torchmetrics"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_backbone(network: torch.nn.Module, path: Path) -> None:
    """Copy torchvision AlexNet's `features.N` weights into the LPIPS stages holding layer N."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for stage in (network.net.slice1, network.net.slice2, network.net.slice3,
                  network.net.slice4, network.net.slice5):  # fmt: skip
        for index, layer in stage.named_children():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.data.copy_(state[f"features.{index}.weight"])
                layer.bias.data.copy_(state[f"features.{index}.bias"])


def load_real(path: Path, device: str = "cpu") -> PerceptualDistance:
    """LPIPS "alex" with the pinned backbone file at `path` (or in that folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / sources.ALEXNET_IMAGENET.filename
    network = _lpips_network()
    linear = _checked_linear_layers(packaged_linear_layers())
    for k, layer in enumerate(network.lins):
        layer.model[1].weight.data.copy_(linear[f"lin{k}.model.1.weight"])
    _load_backbone(network, path)
    return PerceptualDistance(network, name=LPIPS_ALEX).to(device).eval()


def build_tiny(seed: int = 0, device: str = "cpu") -> PerceptualDistance:
    """The same network with random weights (the registry seeds torch's RNG)."""
    return PerceptualDistance(_lpips_network(), name=f"{LPIPS_ALEX} (tiny)").to(device).eval()


register(
    ModelSpec(
        name=LPIPS_ALEX,
        description="LPIPS (AlexNet, v0.1 linear layers): the perceptual term of IN2N's loss",
        source=sources.ALEXNET_IMAGENET,
        load_real=load_real,
        build_tiny=build_tiny,
    )
)
