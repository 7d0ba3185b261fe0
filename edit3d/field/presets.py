"""Named field configurations: "paper" (Sec. 4.1), "small" (quick GPU runs), "tiny" (CPU tests).

A preset is one flat, JSON-able dataclass; `FieldConfig.nerfacto_config()` turns it into
nerfstudio's `NerfactoModelConfig`. Checkpoints store the dataclass as a dict, so a field
reloads with exactly the settings it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from edit3d.field.objective import LossKind, TrainingObjective
from edit3d.field.plain_config import PlainConfig, carry_unmapped, from_plain, require_positive


@dataclass(frozen=True)
class FieldConfig(PlainConfig):
    """Settings of one nerfacto field and of its training loop."""

    backend: ClassVar[str] = "nerfacto"
    """The field backend these settings are for (`edit3d.field.registry`)."""
    tuple_fields: ClassVar[tuple[str, ...]] = ("proposal_samples", "proposal_max_res")

    base_steps: int = 30_000
    """Iterations of base training on the dataset (paper Sec. 4.1: 30k)."""
    turn_steps: int = 15_000
    """Iterations of one editing turn (paper Sec. 4.1: ~15k)."""
    base_lr: float = 0.005
    """Adam learning rate of the NeRF parameters while fitting the dataset (paper: 0.005)."""
    edit_lr: float = 0.0025
    """Adam learning rate of the NeRF parameters during editing turns (paper: 0.0025)."""
    camera_lr: float = 3e-4
    """Adam learning rate of the camera pose refinement (paper: 3e-4, unchanged across turns)."""
    camera_optimizer: Literal["off", "SO3xR3", "SE3"] = "SO3xR3"
    """nerfstudio camera pose refinement mode."""
    rays_per_batch: int = 4096
    """Rays sampled across all views per training iteration."""
    turn_loss: LossKind = "l1+lpips"
    """Loss of an editing turn's steps: "l1+lpips" (IN2N's `in2n`), "l1" (`in2n-tiny`) or
    "mse" (nerfacto's own, as base training uses)."""
    turn_rays_per_batch: int = 16_384
    """Rays per iteration of an editing turn (IN2N's `in2n`: 16,384)."""
    turn_patch_size: int = 32
    """Side of the square patches a turn's rays are drawn as (IN2N: 32 with LPIPS, else 1)."""
    lpips_weight: float = 1.0
    """Multiplier of the turn's LPIPS term (IN2N: 1.0)."""
    lpips_profile: Literal["real", "tiny"] = "real"
    """LPIPS weights: the published ones, or the seeded tiny twin (tests only)."""
    render_chunk: int = 4096
    """Rays per forward pass when rendering a full image."""
    max_image_size: int | None = None
    """Longest side training images are resized to when loaded (None: as stored)."""
    hidden_dim: int = 64
    """Width of nerfacto's density MLP."""
    hidden_dim_color: int = 64
    """Width of nerfacto's colour MLP."""
    num_levels: int = 16
    """Hash grid levels of the main field."""
    max_res: int = 2048
    """Finest hash grid resolution of the main field."""
    log2_hashmap_size: int = 19
    """log2 of the hash table size per level of the main field."""
    proposal_samples: tuple[int, ...] = (256, 96)
    """Samples per ray for each proposal network."""
    nerf_samples: int = 48
    """Samples per ray for the main field."""
    proposal_hidden_dim: int = 16
    """Width of the proposal density MLPs."""
    proposal_log2_hashmap_size: int = 17
    """log2 hash table size of the proposal networks."""
    proposal_max_res: tuple[int, ...] = (128, 256)
    """Finest hash grid resolution of each proposal network."""
    proposal_warmup: int = 5000
    """Steps over which proposal updates are spaced out (nerfstudio default 5000)."""
    appearance_embed_dim: int = 32
    """Per-image appearance embedding size (0 disables it)."""
    background_color: Literal["random", "last_sample", "black", "white"] = "last_sample"
    """How nerfacto fills rays that leave the scene."""
    checkpoint_every: int = 1000
    """Iterations between periodic resumable checkpoints inside a turn or base training."""
    mixed_precision: bool = True
    """On CUDA, train under autocast with a gradient scaler, as `ns-train nerfacto` does
    (ignored on the CPU, which always trains in float32)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further NerfactoModelConfig fields passed through unchanged (power users)."""

    def __post_init__(self) -> None:
        try:
            self.turn_objective()
        except ValueError as error:
            raise ValueError(f"FieldConfig turn loss settings (turn_*, lpips_*): {error}") from None
        require_positive(
            self, ("base_steps", "turn_steps", "rays_per_batch", "render_chunk", "nerf_samples")
        )
        if len(self.proposal_samples) != len(self.proposal_max_res):
            raise ValueError(
                "FieldConfig.proposal_samples and proposal_max_res need one entry per proposal "
                f"network, got {self.proposal_samples} and {self.proposal_max_res}"
            )

    def turn_objective(self) -> TrainingObjective:
        """What an editing turn's steps compute their loss on (see `edit3d.field.objective`)."""
        return TrainingObjective(
            loss=self.turn_loss,
            rays_per_batch=self.turn_rays_per_batch,
            patch_size=self.turn_patch_size,
            lpips_weight=self.lpips_weight,
            lpips_profile=self.lpips_profile,
        )

    def nerfacto_config(self, device: str) -> Any:
        """nerfstudio's NerfactoModelConfig for these settings (torch hash grid off CUDA)."""
        from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
        from nerfstudio.models.nerfacto import NerfactoModelConfig

        implementation = "tcnn" if device.startswith("cuda") and _tcnn_available() else "torch"
        proposal_args = [
            {
                "hidden_dim": self.proposal_hidden_dim,
                "log2_hashmap_size": self.proposal_log2_hashmap_size,
                "num_levels": 5,
                "max_res": max_res,
                "use_linear": False,
            }
            for max_res in self.proposal_max_res
        ]
        kwargs: dict[str, Any] = dict(
            hidden_dim=self.hidden_dim,
            hidden_dim_color=self.hidden_dim_color,
            num_levels=self.num_levels,
            max_res=self.max_res,
            log2_hashmap_size=self.log2_hashmap_size,
            num_proposal_samples_per_ray=tuple(self.proposal_samples),
            num_nerf_samples_per_ray=self.nerf_samples,
            num_proposal_iterations=len(self.proposal_samples),
            proposal_net_args_list=proposal_args,
            proposal_warmup=self.proposal_warmup,
            use_appearance_embedding=self.appearance_embed_dim > 0,
            appearance_embed_dim=max(self.appearance_embed_dim, 1),
            background_color=self.background_color,
            eval_num_rays_per_chunk=self.render_chunk,
            implementation=implementation,
            camera_optimizer=CameraOptimizerConfig(mode=self.camera_optimizer),
        )
        kwargs.update(from_plain(self.extra))
        return NerfactoModelConfig(**kwargs)

    @classmethod
    def from_nerfacto(cls, model_config: Any, **overrides: Any) -> FieldConfig:
        """The FieldConfig that rebuilds a NerfactoModelConfig (e.g. an ns-train run's)."""
        proposal_args = list(model_config.proposal_net_args_list)
        mapped = cls(
            camera_optimizer=model_config.camera_optimizer.mode,
            render_chunk=model_config.eval_num_rays_per_chunk,
            hidden_dim=model_config.hidden_dim,
            hidden_dim_color=model_config.hidden_dim_color,
            num_levels=model_config.num_levels,
            max_res=model_config.max_res,
            log2_hashmap_size=model_config.log2_hashmap_size,
            proposal_samples=tuple(model_config.num_proposal_samples_per_ray),
            nerf_samples=model_config.num_nerf_samples_per_ray,
            proposal_max_res=tuple(
                proposal_args[min(i, len(proposal_args) - 1)]["max_res"]
                for i in range(len(model_config.num_proposal_samples_per_ray))
            ),
            proposal_warmup=model_config.proposal_warmup,
            appearance_embed_dim=(
                model_config.appearance_embed_dim if model_config.use_appearance_embedding else 0
            ),
            background_color=model_config.background_color,
            **overrides,
        )
        skip = ("_target", "camera_optimizer", "implementation", "collider_params")
        return carry_unmapped(mapped, model_config, mapped.nerfacto_config("cpu"), skip)


def _tcnn_available() -> bool:
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return False
    return True


PRESETS: dict[str, FieldConfig] = {
    "paper": FieldConfig(),
    "small": FieldConfig(
        base_steps=5000,
        turn_steps=3000,
        rays_per_batch=2048,
        max_image_size=512,
        log2_hashmap_size=17,
        proposal_samples=(128, 64),
        nerf_samples=32,
        proposal_warmup=1000,
        checkpoint_every=500,
        # IN2N's `in2n-small` trains turns exactly as `in2n` does (it only runs IP2P in
        # half precision): L1 + LPIPS on 32×32 patches at 16,384 rays.
    ),
    "tiny": FieldConfig(
        base_steps=300,
        turn_steps=200,
        camera_optimizer="off",
        rays_per_batch=512,
        render_chunk=2048,
        max_image_size=64,
        hidden_dim=32,
        hidden_dim_color=32,
        num_levels=8,
        max_res=256,
        log2_hashmap_size=14,
        proposal_samples=(32, 16),
        nerf_samples=16,
        proposal_hidden_dim=16,
        proposal_log2_hashmap_size=12,
        proposal_max_res=(64, 128),
        proposal_warmup=100,
        appearance_embed_dim=8,
        checkpoint_every=50,
        # Test-sized: nerfacto's MSE on single rays, like IN2N's `in2n-tiny` (which uses L1).
        turn_loss="mse",
        turn_rays_per_batch=512,
        turn_patch_size=1,
    ),
}
"""Named presets; "paper" follows Sec. 4.1 (30k base iterations, 15k per turn, lr 0.005 /
0.0025 / camera 3e-4) and trains turns with IN2N's `in2n` loss (L1 + LPIPS on 32×32 patches,
16,384 rays); docs/method.md maps each preset to its IN2N variant."""


def get_preset(name: str) -> FieldConfig:
    """The preset called `name` ("paper", "small", "tiny")."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]
