"""`SplatfactoField`: nerfstudio's splatfacto (3D Gaussian splatting) in the dataset's world frame.

The model is nerfstudio's `SplatfactoModel`: its Gaussian parameters, its losses (L1 + SSIM),
its densification strategy (gsplat's `DefaultStrategy`, driven after each step as
splatfacto's training callback drives it), its resolution and SH-degree schedules, its
camera optimiser and its per-group Adam rates. What this module changes is where the pixels
come from: the rasterizer is chosen by `SplatConfig.rasterizer` ("cuda": gsplat's kernels,
"torch": `edit3d.field.splat_raster`, the CPU path), and LPIPS (eval only) is built on first
use, never at construction.

One `train_step` renders one whole training view and steps toward its target, the view
picked as splatfacto's full-image data manager picks it: at random, without replacement
until every view has been seen once, then again.

Cameras: pinhole (PERSPECTIVE) without distortion, the only model splatfacto's rasterizer
renders; a distorted or fisheye dataset is refused with a clear error (undistort it first).
A training view renders with its learned pose correction (when the camera optimiser is on);
any other camera as an ideal pinhole without correction.

Initialisation, as splatfacto: from the dataset's sparse points when it has any
(`SceneDataset.points`: a nerfstudio dataset's `ply_file_path`, a COLMAP model's points3D),
`num_random` Gaussians in a cube otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nerfstudio.models.splatfacto import RGB2SH, SplatfactoModel

from edit3d.field.dataset_field import DatasetField, keep_aspect, write_run
from edit3d.field.model import _lpips_deferred
from edit3d.field.objective import TrainingObjective
from edit3d.field.radiance import FieldCapabilities, RenderResult, StepResult
from edit3d.field.registry import FieldBackend, register_backend
from edit3d.field.splat_presets import SPLAT_PRESETS, SplatConfig
from edit3d.field.splat_raster import Rasterizer, rasterize
from edit3d.field.targets import TargetStore
from edit3d.scene.cameras import CameraView
from edit3d.scene.dataset import SceneDataset, world_c2w_to_nerfstudio

CHECKPOINT_FORMAT = "edit3d-splatfacto-field"
CHECKPOINT_VERSION = 1
GAUSSIAN_GROUPS = ("means", "scales", "quats", "features_dc", "features_rest", "opacities")


class OfflineSplatfactoModel(SplatfactoModel):
    """SplatfactoModel with a chosen rasterizer, built offline on any device.

    Differences from nerfstudio's class, each for a reason: LPIPS is built on first use (its
    constructor downloads weights); seed colours are set on the model's own device (the
    original puts them on CUDA unconditionally); `get_outputs` rasterizes through
    `splat_raster.rasterize` (the original calls gsplat's CUDA rasterization and moves the
    intrinsics to CUDA); a known background colour can be set (nerfstudio's config names
    only "random", "black" and "white"). Parameters, losses, strategy and callbacks are
    nerfstudio's.
    """

    rasterizer: Rasterizer = "cuda"
    fixed_background: torch.Tensor | None = None
    """[3] a known background colour (`SplatConfig.background_rgb`), or None."""

    def _get_background_color(self) -> torch.Tensor:
        if self.fixed_background is not None:
            return self.fixed_background.to(self.device)
        return super()._get_background_color()

    def populate_modules(self) -> None:
        colours = None
        if self.seed_points is not None and len(self.seed_points[1]) > 0:
            colours = self.seed_points[1]
            self.seed_points = (self.seed_points[0], self.seed_points[1][:0])
        with _lpips_deferred():
            super().populate_modules()
        if colours is not None and not self.config.random_init:
            with torch.no_grad():
                rgb = colours.float() / 255.0
                dc = RGB2SH(rgb) if self.config.sh_degree > 0 else torch.logit(rgb, eps=1e-10)
                self.gauss_params["features_dc"].copy_(dc)

    def get_outputs(self, camera: Any) -> dict[str, Any]:
        """Render one camera (nerfstudio's `Cameras`, field frame) as splatfacto does."""
        if self.training:
            c2w = self.camera_optimizer.apply_to_camera(camera)
        else:
            c2w = camera.camera_to_worlds
        factor = self._get_downscale_factor()
        camera.rescale_output_resolution(1 / factor)
        K = camera.get_intrinsics_matrices().to(self.device)
        width, height = int(camera.width.item()), int(camera.height.item())
        camera.rescale_output_resolution(factor)
        self.last_size = (height, width)
        with_depth = self.config.output_depth_during_training or not self.training
        colours = torch.cat([self.features_dc[:, None, :], self.features_rest], dim=1)
        if self.config.sh_degree > 0:
            degree = min(self.step // self.config.sh_degree_interval, self.config.sh_degree)
        else:
            colours, degree = torch.sigmoid(colours).squeeze(1), None
        render, alpha, self.info = rasterize(
            self.means, self.quats, torch.exp(self.scales),
            torch.sigmoid(self.opacities).squeeze(-1), colours,
            world_to_camera(c2w.to(self.device)), K, width, height,
            sh_degree=degree, with_depth=with_depth, absgrad=self.strategy.absgrad,
            rasterizer=self.rasterizer, rasterize_mode=self.config.rasterize_mode,
        )  # fmt: skip
        if self.training:
            self.strategy.step_pre_backward(
                self.gauss_params, self.optimizers, self.strategy_state, self.step, self.info
            )
        background = self._get_background_color()
        rgb = torch.clamp(render[..., :3] + (1 - alpha) * background, 0.0, 1.0)
        depth = None
        if with_depth:
            depth = render[..., 3:4]
            depth = torch.where(alpha > 0, depth, depth.detach().max()).squeeze(0)
        if not self.training:
            background = background.expand(height, width, 3)
        return {
            "rgb": rgb.squeeze(0),
            "depth": depth,
            "accumulation": alpha.squeeze(0),
            "background": background,
        }


def world_to_camera(c2w: torch.Tensor) -> torch.Tensor:
    """[C, 4, 4] gsplat view matrices (OpenCV axes) of [C, 3, 4] nerfstudio camera-to-worlds."""
    rotation = c2w[:, :3, :3] * torch.tensor([1.0, -1.0, -1.0], device=c2w.device)
    inverse = rotation.transpose(1, 2)
    out = torch.zeros(c2w.shape[0], 4, 4, device=c2w.device, dtype=c2w.dtype)
    out[:, :3, :3] = inverse
    out[:, :3, 3:] = -inverse @ c2w[:, :3, 3:]
    out[:, 3, 3] = 1.0
    return out


class SplatfactoField(DatasetField):
    """A splatfacto Gaussian field over a dataset's views (see module docstring)."""

    backend = "splatfacto"
    capabilities = FieldCapabilities(
        trains_on="images",
        pose_correction=True,
        per_view_appearance=False,
        camera_models=("PERSPECTIVE",),
    )

    def __init__(
        self,
        config: SplatConfig,
        views: list[CameraView],
        transform: np.ndarray,
        scale: float,
        scene_aabb: np.ndarray,
        *,
        device: str = "cpu",
        dataset_root: Path | None = None,
        seed_points: tuple[torch.Tensor, torch.Tensor] | None = None,
        seed: int = 0,
    ) -> None:
        self._init_frames(views, transform, scale, scene_aabb, dataset_root, None)
        if config.rasterizer == "cuda" and not device.startswith("cuda"):
            raise ValueError(
                f"rasterizer 'cuda' needs a CUDA device, got device {device!r}; the pure-"
                "PyTorch path is SplatConfig(rasterizer='torch') (slow: tests and small scenes)"
            )
        self.config = config
        self.device = device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = OfflineSplatfactoModel(
                config=config.splatfacto_config(),
                scene_box=_scene_box(self.scene_aabb),
                num_train_data=len(views),
                seed_points=seed_points,
            )
        model.rasterizer = config.rasterizer
        if config.background_rgb is not None:
            model.fixed_background = torch.tensor(config.background_rgb, dtype=torch.float32)
        model.strategy.verbose = False  # counts go to no console here; `num_gaussians` has them
        self.model = model.to(device)
        self.step = 0
        self.generator = torch.Generator().manual_seed(seed)
        self.unseen: list[int] = []
        """Views not yet trained on in this pass (splatfacto's image order)."""
        self._optimizers: dict[str, torch.optim.Optimizer] | None = None

    # --- construction ----------------------------------------------------------------

    @classmethod
    def from_dataset(
        cls, dataset: SceneDataset, config: SplatConfig, device: str = "cpu", *, seed: int = 0
    ) -> SplatfactoField:
        """An untrained field over a dataset (seeded from its points when it has any)."""
        check_cameras(dataset)
        points = None if config.random_init else seed_points(dataset)
        field = cls(
            config, dataset.views, dataset.transform, dataset.scale, dataset.scene_aabb,
            device=device, dataset_root=dataset.root, seed_points=points, seed=seed,
        )  # fmt: skip
        field._dataset = dataset
        return field

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: str = "cpu") -> SplatfactoField:
        """The field a `state_dict()` describes (any Gaussian count)."""
        field = cls(
            SplatConfig.from_dict(state["config"]),
            **cls.frame_arguments(state),
            device=device,
            seed_points=(torch.zeros(4, 3), torch.zeros(0, 3)),  # replaced by the state
        )
        field.load_state_dict(state)
        return field

    # --- the Gaussians ---------------------------------------------------------------

    @property
    def num_gaussians(self) -> int:
        return int(self.model.num_points)

    def gaussians(self) -> Any:
        """The Gaussians as `edit3d.export.geometry.GaussianSplats`, in the field frame
        (nerfstudio's, see `world_to_field`); SH in splatfacto's convention."""
        from edit3d.export.geometry import GaussianSplats

        params = {k: v.detach().float().cpu().numpy() for k, v in self.model.gauss_params.items()}
        dc = params["features_dc"]
        if self.config.sh_degree == 0:  # splatfacto stores a colour logit at degree 0
            dc = GaussianSplats.dc_from_rgb(1.0 / (1.0 + np.exp(-dc)))
        return GaussianSplats(
            means=params["means"],
            scales_log=params["scales"],
            quats_wxyz=params["quats"],
            opacities_logit=params["opacities"].reshape(-1),
            sh_dc=dc,
            sh_rest=params["features_rest"],
        )

    # --- rendering -------------------------------------------------------------------

    def nerfstudio_camera(
        self, view: CameraView, width: int | None = None, height: int | None = None
    ) -> Any:
        """nerfstudio's Cameras (one pinhole camera, field frame) for a world-frame view; a
        training view carries its index (for the camera optimiser) and its correction."""
        from nerfstudio.cameras.cameras import Cameras, CameraType

        intr = view.intrinsics
        if width is not None or height is not None:
            intr = intr.scaled_to(
                width or keep_aspect(intr, height, "w"), height or keep_aspect(intr, width, "h")
            )
        c2w = torch.tensor(
            world_c2w_to_nerfstudio(view.c2w, self.transform, self.scale), dtype=torch.float32
        )[None]
        index = self.training_index(view)
        return Cameras(
            camera_to_worlds=c2w,
            fx=float(intr.fx), fy=float(intr.fy), cx=float(intr.cx), cy=float(intr.cy),
            width=int(intr.width), height=int(intr.height),
            camera_type=CameraType.PERSPECTIVE,
            metadata={"cam_idx": index} if index is not None else None,
        ).to(self.device)  # fmt: skip

    @torch.no_grad()
    def render(
        self, view: CameraView, *, width: int | None = None, height: int | None = None
    ) -> RenderResult:
        """Render a world-frame camera (a training view with its pose correction)."""
        camera = self.nerfstudio_camera(view, width, height)
        if camera.metadata is not None:
            # splatfacto corrects poses only in training mode; a training view renders
            # as it is trained.
            camera.camera_to_worlds = self.model.camera_optimizer.apply_to_camera(camera)
        return self.render_nerfstudio_camera(camera)

    @torch.no_grad()
    def render_nerfstudio_camera(self, camera: Any) -> RenderResult:
        """Render a nerfstudio Cameras object already in the field frame, as it is."""
        was_training = self.model.training
        self.model.eval()
        try:
            outputs = self.model.get_outputs(camera)
        finally:
            self.model.train(was_training)
        z_depth = outputs["depth"][..., 0]
        return RenderResult(
            rgb=outputs["rgb"].float().cpu().numpy(),
            depth=(z_depth * _ray_length_per_z(camera)).float().cpu().numpy() / self.scale,
            accumulation=outputs["accumulation"][..., 0].clamp(0, 1).float().cpu().numpy(),
        )

    # --- training --------------------------------------------------------------------

    def train_step(
        self, targets: TargetStore, *, lr: float, objective: TrainingObjective | None = None
    ) -> StepResult:
        """One splatfacto iteration: render one whole view, L1 + SSIM to its target, Adam
        on every group, then densification (splatfacto's post-backward callback). Only the
        backend's own loss exists here (`objective` None; see `SplatConfig.turn_objective`)."""
        if objective is not None:
            raise ValueError(
                "objective must be None for the splatfacto backend (it trains whole images "
                f"with splatfacto's L1 + SSIM), got {objective}"
            )
        self.model.train()
        optimizers = self.optimizers(lr)
        self.model.step = self.step
        self.model.optimizers = optimizers
        name = targets.names[self._next_view(len(targets))]
        height, width = targets.size_of(name)
        camera = self.nerfstudio_camera(self.view(name), width, height)
        batch = {"image": targets.image(name)}
        outputs = self.model(camera)
        losses = self.model.get_loss_dict(outputs, batch)
        loss = sum(losses.values())
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()
        self.model.step_post_backward(self.step)
        self.step += 1
        return StepResult(self.step, float(loss.detach()), float(losses["main_loss"].detach()))

    def _next_view(self, count: int) -> int:
        """A random view not yet seen in this pass (splatfacto's FullImageDatamanager)."""
        if not self.unseen or max(self.unseen) >= count:
            self.unseen = list(range(count))
        pick = int(torch.randint(len(self.unseen), (1,), generator=self.generator))
        return self.unseen.pop(pick)

    def sync_schedule(self, iteration: int) -> None:
        """splatfacto's schedules read the model's step, which `train_step` sets."""
        self.model.step = iteration

    def optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """One Adam per parameter group (the strategy edits them by name), rates at step."""
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if self._optimizers is None:
            groups = self.model.get_param_groups()
            self._optimizers = {
                name: torch.optim.Adam([{"params": params, "lr": 1.0}], eps=1e-15)
                for name, params in groups.items()
                if params
            }
        factor = lr / self.config.base_lr
        for name, optimizer in self._optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = factor * self._group_lr(name)
        return self._optimizers

    def _group_lr(self, name: str) -> float:
        """splatfacto's rate of a group at the current step (its schedulers' formulas)."""
        config = self.config
        progress = min(self.step / config.lr_decay_steps, 1.0)
        if name == "means":
            return _log_lerp(config.means_lr, config.means_lr_final, progress)
        if name == "camera_opt":
            warmup = 1000
            if self.step < warmup:
                return config.camera_lr * math.sin(0.5 * math.pi * self.step / warmup)
            late = min((self.step - warmup) / max(config.lr_decay_steps - warmup, 1), 1.0)
            return _log_lerp(config.camera_lr, 5e-7, late)
        return float(getattr(config, f"{name}_lr"))

    # --- checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything `from_state` needs, as tensors and plain Python values."""
        strategy = {
            k: (v.detach().cpu().clone() if torch.is_tensor(v) else v)
            for k, v in self.model.strategy_state.items()
        }
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            **self.frame_state(),
            "model": self.model.state_dict(),
            "optimizers": (
                {k: o.state_dict() for k, o in self._optimizers.items()}
                if self._optimizers is not None
                else None
            ),
            "strategy": strategy,
            "step": self.step,
            "unseen": list(self.unseen),
            **self.rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # nerfstudio's load rebuilds every Gaussian parameter at the saved count.
        self.model.load_state_dict(dict(state["model"]))
        self.model.to(self.device)
        self.step = int(state["step"])
        self.model.step = self.step
        self._optimizers = None
        if state.get("optimizers") is not None:
            for name, optimizer in self.optimizers(self.config.base_lr).items():
                optimizer.load_state_dict(state["optimizers"][name])
        strategy = state.get("strategy") or {}
        self.model.strategy_state.update(
            {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in strategy.items()}
        )
        self.unseen = [int(i) for i in state.get("unseen", [])]
        self.load_rng_state(state)


def _log_lerp(start: float, end: float, t: float) -> float:
    return float(math.exp(math.log(start) * (1 - t) + math.log(end) * t))


def _ray_length_per_z(camera: Any) -> torch.Tensor:
    """[H, W] length of each pixel's ray per unit of camera depth (z → ray distance)."""
    fx, fy = float(camera.fx[0, 0]), float(camera.fy[0, 0])
    cx, cy = float(camera.cx[0, 0]), float(camera.cy[0, 0])
    width, height = int(camera.width[0, 0]), int(camera.height[0, 0])
    x = (torch.arange(width, dtype=torch.float32) + 0.5 - cx) / fx
    y = (torch.arange(height, dtype=torch.float32) + 0.5 - cy) / fy
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.sqrt(1.0 + xx**2 + yy**2).to(camera.device)


def _scene_box(aabb: np.ndarray) -> Any:
    from nerfstudio.data.scene_box import SceneBox

    return SceneBox(aabb=torch.tensor(aabb, dtype=torch.float32))


def check_cameras(dataset: SceneDataset) -> None:
    """Refuse cameras splatfacto's pinhole rasterizer would silently render wrongly."""
    if dataset.camera_model != "PERSPECTIVE" or dataset.distortion:
        what = (
            f"camera model {dataset.camera_model}"
            if dataset.camera_model != "PERSPECTIVE"
            else f"lens distortion in {len(dataset.distortion)} views"
        )
        raise ValueError(
            f"{dataset.root}: {what} is not supported by the splatfacto backend (its "
            "rasterizer renders undistorted pinhole cameras); undistort the images first "
            "(e.g. COLMAP image_undistorter), or use the nerfacto backend"
        )


def seed_points(dataset: SceneDataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """splatfacto's `seed_points` (positions [N, 3] field frame, colours [N, 3] uint8 values)
    from the dataset's sparse points, or None when it has none (random initialisation)."""
    points = dataset.points
    # nerfstudio's scale initialisation averages each seed's three nearest other seeds.
    if points is None or len(points.xyz) < 4:
        return None
    return torch.from_numpy(points.xyz.copy()), torch.from_numpy(points.rgb.copy())


def _load_run(config_yml: Path, device: str, data: Path | None) -> SplatfactoField:
    from edit3d.field.nerfstudio_run import load_splatfacto_run

    return load_splatfacto_run(config_yml, device, data=data)


register_backend(
    FieldBackend(
        name=SplatfactoField.backend,
        checkpoint_format=CHECKPOINT_FORMAT,
        config_from_dict=SplatConfig.from_dict,
        presets=SPLAT_PRESETS,
        from_dataset=lambda dataset, config, device, seed: SplatfactoField.from_dataset(
            dataset, config, device, seed=seed
        ),
        from_state=SplatfactoField.from_state,
        nerfstudio_model="SplatfactoModelConfig",
        from_nerfstudio_run=lambda config_yml, device, data: _load_run(config_yml, device, data),
        to_nerfstudio_run=write_run,
    )
)
