"""`TrainingObjective`: what one training step compares, and how.

A backend's base training uses its own loss (nerfacto: MSE on a random ray batch). An
editing turn can ask for instruct-nerf2nerf's objective instead — its `in2n` method trains
with L1 + LPIPS on 32×32 patches at 16,384 rays — so the objective is a setting of the
training run (`edit3d.training.TrainingRun`) whose defaults one owner holds: the backend's
preset (`FieldConfig.turn_objective()` for nerfacto).

`photometric_losses` is the backend-neutral part: given rendered and target pixels laid out
patch by patch, it returns the loss terms that replace or join the backend's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the settings records (presets) import this module and stay torch-free
    import torch

LossKind = Literal["mse", "l1", "l1+lpips"]
LOSS_KINDS: tuple[str, ...] = ("mse", "l1", "l1+lpips")

LPIPS_MODEL = "lpips-alex"
"""Registered name of the perceptual network (`edit3d.models.lpips`)."""

PerceptualDistance = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""(rendered [B, 3, P, P], target [B, 3, P, P], both in [0, 1]) → mean distance (scalar)."""


@dataclass(frozen=True)
class TrainingObjective:
    """The loss of one training step and the batch it is computed on."""

    loss: LossKind = "mse"
    """"mse": the backend's own photometric loss (nerfacto's MSE); "l1": mean absolute error
    (IN2N's `in2n-tiny`); "l1+lpips": L1 plus `lpips_weight` · LPIPS over patches (IN2N's
    `in2n` and `in2n-small`)."""
    rays_per_batch: int = 4096
    """Pixels per step (rounded down to whole patches, as nerfstudio's PatchPixelSampler
    does)."""
    patch_size: int = 1
    """Side of the square pixel patches a batch is drawn as (1: independent pixels)."""
    lpips_weight: float = 1.0
    """Multiplier of the LPIPS term (IN2N: 1.0)."""
    lpips_profile: Literal["real", "tiny"] = "real"
    """Weights of the perceptual network: the published ones, or the seeded tiny twin (tests
    only: its distance means nothing)."""

    def __post_init__(self) -> None:
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"loss must be one of {LOSS_KINDS}, got {self.loss!r}")
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be ≥ 1, got {self.patch_size}")
        if self.rays_per_batch < self.patch_size**2:
            raise ValueError(
                f"rays_per_batch must hold at least one {self.patch_size}×{self.patch_size} "
                f"patch, got {self.rays_per_batch}"
            )
        if self.uses_lpips and self.patch_size < 2:
            raise ValueError(f"loss {self.loss!r} needs patch_size ≥ 2, got {self.patch_size}")
        if self.lpips_weight < 0:
            raise ValueError(f"lpips_weight must be ≥ 0, got {self.lpips_weight}")
        if self.lpips_profile not in ("real", "tiny"):
            raise ValueError(f"lpips_profile must be 'real' or 'tiny', got {self.lpips_profile!r}")

    @property
    def uses_lpips(self) -> bool:
        return self.loss == "l1+lpips"

    @property
    def patches_per_batch(self) -> int:
        """Whole patches in one batch."""
        return self.rays_per_batch // self.patch_size**2


def as_patches(pixels: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B·P·P, 3] pixels, patch by patch and row-major inside one → [B, 3, P, P]."""
    return pixels.reshape(-1, patch_size, patch_size, 3).permute(0, 3, 1, 2)


def photometric_losses(
    rendered: torch.Tensor,
    target: torch.Tensor,
    objective: TrainingObjective,
    lpips: PerceptualDistance | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms of `objective` for [N, 3] rendered and target pixels (patch-major order).

    "mse" returns nothing (the backend keeps its own); "l1" returns "rgb_loss"; "l1+lpips"
    adds "lpips_loss" = lpips_weight · LPIPS over the patches.
    """
    if objective.loss == "mse":
        return {}
    losses = {"rgb_loss": (rendered - target).abs().mean()}
    if objective.uses_lpips:
        if lpips is None:
            raise ValueError(f"loss {objective.loss!r} needs a perceptual network, got None")
        size = objective.patch_size
        distance = lpips(as_patches(rendered, size), as_patches(target, size))
        losses["lpips_loss"] = objective.lpips_weight * distance
    return losses


def require_weights(objective: TrainingObjective | None) -> None:
    """ModelNotAvailable now if `objective`'s networks lack real weights here (nothing is
    loaded): a turn calls this before its pre-renders, not at its first training step."""
    if objective is not None and objective.uses_lpips and objective.lpips_profile == "real":
        from edit3d.models.registry import resolve_path

        resolve_path(LPIPS_MODEL)
