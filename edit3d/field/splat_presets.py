"""Settings of the splatfacto backend: "paper" (ns-train splatfacto's defaults), "small", "tiny".

`SplatConfig` is flat and JSON-able like `FieldConfig`; `splatfacto_config()` turns it into
nerfstudio's `SplatfactoModelConfig`. The per-group learning rates are splatfacto's
(nerfstudio's `method_configs["splatfacto"]`).

Learning rate: the runner passes one `lr` per step (`base_lr` for base training, the turn's
`lr` during an edit, the fine-tune's own). A Gaussian model has no single learning rate, so
the backend scales every group's rate by `lr / base_lr`: at `base_lr` it trains exactly as
splatfacto, and a turn's paper rate (0.0025 against 0.005) halves every group, as the paper
halves the NeRF's rate while editing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from edit3d.field.plain_config import PlainConfig, carry_unmapped, from_plain, require_positive

MODEL_FIELDS = (
    "warmup_length", "refine_every", "resolution_schedule", "background_color", "num_downscales",
    "cull_alpha_thresh", "cull_scale_thresh", "reset_alpha_every", "densify_grad_thresh",
    "use_absgrad", "densify_size_thresh", "n_split_samples", "sh_degree_interval",
    "cull_screen_size", "split_screen_size", "stop_screen_size_at", "random_init", "num_random",
    "random_scale", "ssim_lambda", "stop_split_at", "sh_degree", "rasterize_mode",
)  # fmt: skip
"""`SplatConfig` fields that are `SplatfactoModelConfig` fields of the same name and meaning."""


@dataclass(frozen=True)
class SplatConfig(PlainConfig):
    """Settings of one splatfacto field and of its training."""

    backend: ClassVar[str] = "splatfacto"
    """The field backend these settings are for (`edit3d.field.registry`)."""

    rasterizer: Literal["cuda", "torch"] = "cuda"
    """"cuda": gsplat's compiled kernels (needs a CUDA device). "torch": the pure-PyTorch
    path (`edit3d.field.splat_raster`), the CPU and test path: exact but slow, for scenes of
    a few thousand Gaussians. Never chosen automatically."""
    base_steps: int = 30_000
    """Iterations of base training (ns-train splatfacto: 30k)."""
    turn_steps: int = 15_000
    """Iterations of one editing turn (paper Sec. 4.1: ~15k)."""
    base_lr: float = 0.005
    """Reference rate of base training: the runner's rate divided by this scales every group."""
    edit_lr: float = 0.0025
    """Rate of editing turns, relative to `base_lr` (the paper halves it)."""
    means_lr: float = 1.6e-4
    """Adam rate of the Gaussian centres at step 0 (splatfacto)."""
    means_lr_final: float = 1.6e-6
    """Rate of the centres after `lr_decay_steps` (exponential decay, splatfacto)."""
    lr_decay_steps: int = 30_000
    """Steps over which the centres' (and cameras') rates decay."""
    features_dc_lr: float = 0.0025
    """Adam rate of the degree-0 colour coefficients."""
    features_rest_lr: float = 0.0025 / 20
    """Adam rate of the higher SH coefficients."""
    opacities_lr: float = 0.05
    """Adam rate of the opacity logits."""
    scales_lr: float = 0.005
    """Adam rate of the log scales."""
    quats_lr: float = 0.001
    """Adam rate of the rotations."""
    camera_lr: float = 1e-4
    """Adam rate of the camera pose refinement (when on)."""
    camera_optimizer: Literal["off", "SO3xR3", "SE3"] = "off"
    """nerfstudio camera pose refinement mode (splatfacto's default: off)."""
    max_image_size: int | None = None
    """Longest side training images are resized to when loaded (None: as stored)."""
    checkpoint_every: int = 1000
    """Iterations between periodic resumable checkpoints."""
    warmup_length: int = 500
    """Steps before densification starts."""
    refine_every: int = 100
    """Steps between densification/culling rounds."""
    resolution_schedule: int = 3000
    """Training starts at 1/2^num_downscales resolution, doubled every this many steps."""
    num_downscales: int = 2
    """Initial resolution halvings (0: always full resolution)."""
    background_color: Literal["random", "black", "white"] = "random"
    """Background behind the Gaussians while training ("random": a new colour per step)."""
    background_rgb: tuple[float, float, float] | None = None
    """A known uniform background (a studio backdrop, a synthetic scene's sky), RGB in
    [0, 1], drawn behind the Gaussians in training and in renders instead of
    `background_color`, so that no Gaussians have to paint it. None: `background_color`.
    nerfstudio's config cannot name a colour: a run written for ns-train keeps
    `background_color`."""
    cull_alpha_thresh: float = 0.1
    """Gaussians below this opacity are culled."""
    cull_scale_thresh: float = 0.5
    """Gaussians larger than this (field units) are culled."""
    reset_alpha_every: int = 30
    """Densification rounds between opacity resets."""
    densify_grad_thresh: float = 0.0008
    """2D position gradient above which Gaussians are densified."""
    use_absgrad: bool = True
    """Densify on the summed absolute per-pixel gradients (AbsGS), as splatfacto does."""
    densify_size_thresh: float = 0.01
    """Below this size Gaussians are duplicated, above it split."""
    n_split_samples: int = 2
    """Gaussians one split makes."""
    sh_degree_interval: int = 1000
    """Steps between turning on another SH degree."""
    cull_screen_size: float = 0.15
    """Gaussians larger than this fraction of the screen are culled."""
    split_screen_size: float = 0.05
    """Gaussians larger than this fraction of the screen are split."""
    stop_screen_size_at: int = 4000
    """Step after which screen-size culling and splitting stop."""
    stop_split_at: int = 15_000
    """Step after which densification stops."""
    sh_degree: int = 3
    """Highest spherical-harmonics degree of the colours."""
    ssim_lambda: float = 0.2
    """Weight of the SSIM term in the loss (the rest is L1)."""
    random_init: bool = False
    """Start from random positions even when the dataset has points."""
    num_random: int = 50_000
    """Gaussians of a random start."""
    random_scale: float = 10.0
    """Side of the cube (field units, centred at the origin) a random start fills."""
    rasterize_mode: Literal["classic", "antialiased"] = "classic"
    """gsplat's rasterization mode."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further SplatfactoModelConfig fields passed through unchanged (power users)."""

    def __post_init__(self) -> None:
        if self.rasterizer not in ("cuda", "torch"):
            raise ValueError(
                f"SplatConfig.rasterizer must be 'cuda' or 'torch', got {self.rasterizer!r}"
            )
        require_positive(
            self,
            ("base_steps", "turn_steps", "num_random", "refine_every", "lr_decay_steps", "base_lr"),
        )
        if self.background_rgb is not None:
            rgb = tuple(float(v) for v in self.background_rgb)
            if len(rgb) != 3 or not all(0.0 <= v <= 1.0 for v in rgb):
                raise ValueError(
                    "SplatConfig.background_rgb must be three values in [0, 1], got "
                    f"{self.background_rgb!r}"
                )
            object.__setattr__(self, "background_rgb", rgb)  # a JSON list comes back a tuple

    def turn_objective(self) -> None:
        """None: turns train with splatfacto's own whole-image loss (L1 + SSIM), as
        instruct-gs2gs does; IN2N's ray-patch objectives do not apply to whole images."""
        return None

    def splatfacto_config(self) -> Any:
        """nerfstudio's SplatfactoModelConfig for these settings."""
        from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
        from nerfstudio.models.splatfacto import SplatfactoModelConfig

        kwargs = {name: getattr(self, name) for name in MODEL_FIELDS}
        kwargs["camera_optimizer"] = CameraOptimizerConfig(mode=self.camera_optimizer)
        kwargs.update(from_plain(self.extra))
        return SplatfactoModelConfig(**kwargs)

    @classmethod
    def from_splatfacto(cls, model_config: Any, **overrides: Any) -> SplatConfig:
        """The SplatConfig that rebuilds a SplatfactoModelConfig (e.g. an ns-train run's)."""
        mapped = cls(
            camera_optimizer=model_config.camera_optimizer.mode,
            **{name: getattr(model_config, name) for name in MODEL_FIELDS},
            **overrides,
        )
        skip = ("_target", "camera_optimizer", *MODEL_FIELDS)
        return carry_unmapped(mapped, model_config, mapped.splatfacto_config(), skip)


SPLAT_PRESETS: dict[str, SplatConfig] = {
    "paper": SplatConfig(),
    "small": SplatConfig(
        base_steps=7000,
        turn_steps=3000,
        max_image_size=512,
        lr_decay_steps=7000,
        stop_split_at=5000,
        checkpoint_every=500,
    ),
    "tiny": SplatConfig(
        rasterizer="torch",
        base_steps=300,
        turn_steps=200,
        max_image_size=64,
        lr_decay_steps=1000,
        num_downscales=0,
        warmup_length=100,
        refine_every=50,
        stop_split_at=250,
        stop_screen_size_at=250,
        sh_degree=1,
        sh_degree_interval=100,
        num_random=1000,
        random_scale=1.5,
        # 100x fewer steps than ns-train: the rates that move Gaussians and colours are
        # raised so a few hundred steps fit a 32-64 px scene.
        means_lr=1.6e-3,
        means_lr_final=1.6e-5,
        features_dc_lr=0.05,
        features_rest_lr=0.0005,
        scales_lr=0.01,
        checkpoint_every=50,
    ),
}
"""Named presets: "paper" is ns-train splatfacto's defaults with the paper's turn length;
"tiny" trains about a thousand Gaussians on the CPU ("torch" rasterizer)."""
