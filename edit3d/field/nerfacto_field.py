"""`NerfactoField`: a nerfacto model that speaks the dataset's world frame.

Poses in and geometry out are in the dataset's world frame (OpenGL camera convention);
inside, nerfstudio's dataparser transform and scale apply:

    p_field = scale * (T @ p_world)          (T: 3x4 rotation + translation)

One call of `train_step` is one nerfstudio training iteration (nerfstudio's model, losses and
training callbacks) on a random ray batch from an in-memory `TargetStore`; the loop around
it (schedule, checkpoints, hooks) is `edit3d.training.TrainingRun`.

Renders follow training: a training view renders with the dataset's distortion, its learned
pose correction and its own appearance embedding; any other camera as an ideal pinhole with
no correction and nerfstudio's mean appearance embedding (see docs/method.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from edit3d.field.dataset_field import DatasetField, keep_aspect, write_run
from edit3d.field.model import OfflineNerfactoModel, build_nerfacto
from edit3d.field.objective import (
    LPIPS_MODEL,
    PerceptualDistance,
    TrainingObjective,
    photometric_losses,
)
from edit3d.field.presets import PRESETS, FieldConfig
from edit3d.field.radiance import FieldCapabilities, RenderResult, StepResult
from edit3d.field.registry import FieldBackend, read_checkpoint, register_backend
from edit3d.field.targets import TargetStore
from edit3d.scene.cameras import CameraView
from edit3d.scene.dataset import SceneDataset, load_dataset, world_c2w_to_nerfstudio

CHECKPOINT_FORMAT = "edit3d-nerfacto-field"
CHECKPOINT_VERSION = 1


SUPPORTED_CAMERA_MODELS = ("PERSPECTIVE",)
"""nerfstudio camera types trained and rendered exactly (pinhole + OpenCV k1..k4, p1, p2)."""


class NerfactoField(DatasetField):
    """A nerfacto radiance field over a dataset's views (see module docstring)."""

    backend = "nerfacto"
    capabilities = FieldCapabilities(
        trains_on="rays",
        pose_correction=True,
        per_view_appearance=True,
        camera_models=SUPPORTED_CAMERA_MODELS,
    )

    def __init__(
        self,
        config: FieldConfig,
        views: list[CameraView],
        transform: np.ndarray,
        scale: float,
        scene_aabb: np.ndarray,
        *,
        device: str = "cpu",
        dataset_root: Path | None = None,
        distortion: Mapping[str, np.ndarray] | None = None,
        model: OfflineNerfactoModel | None = None,
        seed: int = 0,
    ) -> None:
        self._init_frames(views, transform, scale, scene_aabb, dataset_root, distortion)
        self.config = config
        self.device = device
        if model is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = build_nerfacto(
                    config.nerfacto_config(device),
                    torch.from_numpy(self.scene_aabb),
                    len(views),
                    device,
                )
        self.model = model
        self.step = 0
        self.generator = torch.Generator().manual_seed(seed)
        self._optimizer: torch.optim.Optimizer | None = None
        self.mixed_precision = config.mixed_precision and device.startswith("cuda")
        """Whether training steps run under autocast with a gradient scaler (CUDA only)."""
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.mixed_precision)
        self._callbacks = _training_callbacks(model)
        self._ray_cameras: tuple[int, int, Any] | None = None
        self._lpips: tuple[str, PerceptualDistance] | None = None

    # --- construction ----------------------------------------------------------------

    @classmethod
    def from_dataset(
        cls,
        path: str | Path | SceneDataset,
        config: FieldConfig,
        device: str = "cpu",
        *,
        seed: int = 0,
    ) -> NerfactoField:
        """An untrained field over a dataset folder (nerfstudio or Blender-synthetic layout)."""
        dataset = path if isinstance(path, SceneDataset) else load_dataset(path)
        check_camera_model(dataset)
        field = cls(
            config,
            dataset.views,
            dataset.transform,
            dataset.scale,
            dataset.scene_aabb,
            device=device,
            dataset_root=dataset.root,
            distortion=dataset.distortion,
            seed=seed,
        )
        field._dataset = dataset
        return field

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> NerfactoField:
        """A field saved by `save_checkpoint` (model, frame, views, config, optimizer, RNG)."""
        state = read_checkpoint(path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"path is not an {CHECKPOINT_FORMAT} checkpoint: {str(path)!r}")
        return cls.from_state(state, device)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: str = "cpu") -> NerfactoField:
        """The field a `state_dict()` describes (tensors on CPU: the RNG states must be;
        `load_state_dict` moves the model's and optimizer's tensors to `device`)."""
        field = cls(
            FieldConfig.from_dict(state["config"]),
            **cls.frame_arguments(state),
            device=device,
            distortion={k: v.numpy() for k, v in state["distortion"].items()},
        )
        field.load_state_dict(state)
        return field

    @classmethod
    def from_nerfstudio_run(
        cls, config_yml: str | Path, device: str = "cpu", *, data: str | Path | None = None
    ) -> NerfactoField:
        """The model of an `ns-train nerfacto` run (its config.yml, latest step-*.ckpt)."""
        from edit3d.field.nerfstudio_run import load_nerfstudio_run

        return load_nerfstudio_run(cls, Path(config_yml), device, data=data)

    # --- frames ----------------------------------------------------------------------

    # --- rendering -------------------------------------------------------------------

    def nerfstudio_camera(
        self, view: CameraView, width: int | None = None, height: int | None = None
    ) -> Any:
        """nerfstudio's Cameras (one camera, field frame) for a world-frame view.

        A training view gets its dataset distortion and its learned pose correction (as
        nerfstudio applies it to training rays); any other camera is an ideal pinhole.
        """
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
        distortion = None
        if index is not None:
            c2w = self._corrected_c2w(c2w, index)
            if view.name in self.distortion:
                distortion = torch.tensor(self.distortion[view.name], dtype=torch.float32)[None]
        return Cameras(
            camera_to_worlds=c2w,
            fx=float(intr.fx),
            fy=float(intr.fy),
            cx=float(intr.cx),
            cy=float(intr.cy),
            width=int(intr.width),
            height=int(intr.height),
            distortion_params=distortion,
            camera_type=CameraType.PERSPECTIVE,
        ).to(self.device)

    @torch.no_grad()
    def _corrected_c2w(self, c2w: torch.Tensor, index: int) -> torch.Tensor:
        """[1, 3, 4] field-frame pose with the camera optimiser's correction of view `index`."""
        optimizer = self.model.camera_optimizer
        if optimizer.config.mode == "off":
            return c2w
        correction = optimizer(torch.tensor([index], device=self.device)).float().cpu()
        # As nerfstudio corrects training rays: rotate directions, shift the origin.
        rotation = torch.bmm(correction[:, :3, :3], c2w[:, :3, :3])
        return torch.cat([rotation, c2w[:, :3, 3:] + correction[:, :3, 3:]], dim=-1)

    @torch.no_grad()
    def render(
        self, view: CameraView, *, width: int | None = None, height: int | None = None
    ) -> RenderResult:
        """Render a world-frame camera, optionally at another resolution (same field of view).

        A training view renders as it is trained (distortion, pose correction, its own
        appearance embedding); any other camera with no correction and the mean appearance.
        """
        camera = self.nerfstudio_camera(view, width, height)
        return self.render_nerfstudio_camera(camera, view_index=self.training_index(view))

    @torch.no_grad()
    def render_nerfstudio_camera(self, camera: Any, view_index: int | None = None) -> RenderResult:
        """Render a nerfstudio Cameras object already in the field frame.

        `view_index`: the training view whose appearance embedding the rays carry (None: the
        mean embedding, nerfstudio's eval-mode choice).
        """
        was_training = self.model.training
        sampler_state = self._sampler_state()
        self.model.eval()
        try:
            bundle = camera.generate_rays(camera_indices=0, keep_shape=True)
            with self._appearance_of(view_index):
                if view_index is not None:
                    bundle.camera_indices = torch.full_like(bundle.camera_indices, view_index)
                outputs = self.model.get_outputs_for_camera_ray_bundle(bundle)
        finally:
            self.model.train(was_training)
            # nerfstudio's proposal sampler counts renders as updates; a render must not
            # change the training schedule.
            self._set_sampler_state(sampler_state)
        return RenderResult(
            rgb=outputs["rgb"].clamp(0, 1).float().cpu().numpy(),
            depth=(outputs["depth"][..., 0] / self.scale).float().cpu().numpy(),
            accumulation=outputs["accumulation"][..., 0].clamp(0, 1).float().cpu().numpy(),
        )

    @contextmanager
    def _appearance_of(self, view_index: int | None) -> Iterator[None]:
        """Make nerfacto's field look up the rays' own appearance embedding in an eval render.

        nerfacto picks the per-image embedding only when its field module is in training
        mode; only that module's flag is set (no dropout or sampler state depends on it).
        """
        field = self.model.field
        if view_index is None or getattr(field, "embedding_appearance", None) is None:
            yield
            return
        before = field.training
        field.training = True
        try:
            yield
        finally:
            field.training = before

    # --- training --------------------------------------------------------------------

    def train_step(
        self, targets: TargetStore, *, lr: float, objective: TrainingObjective | None = None
    ) -> StepResult:
        """One nerfacto training iteration on a ray batch drawn across all views.

        `objective` None: nerfacto's own loss on `rays_per_batch` independent rays; else its
        batch (whole patches when patch_size > 1) and photometric loss replace those, and
        nerfacto's other terms (interlevel, distortion, camera regulariser) stay.
        """
        from nerfstudio.engine.callbacks import TrainingCallbackLocation

        self.model.train()
        optimizer = self.optimizer(lr)
        for callback in self._callbacks:
            callback.run_callback_at_location(
                self.step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION
            )
        view_index, coords, rgb = self._sample_batch(targets, objective)
        ray_bundle = self._ray_cameras_for(targets).generate_rays(
            camera_indices=view_index[:, None], coords=coords
        )
        # As ns-train: autocast + a gradient scaler on CUDA when mixed precision is on.
        with torch.autocast(device_type="cuda", enabled=self.mixed_precision):
            outputs = self.model(ray_bundle)  # collider, then get_outputs
            batch = {"image": rgb}
            metrics = self.model.get_metrics_dict(outputs, batch)
            losses = self.model.get_loss_dict(outputs, batch, metrics)
            if objective is not None:
                losses.update(self._objective_losses(outputs, rgb, objective))
            loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(loss).backward()
        self.grad_scaler.step(optimizer)
        self.grad_scaler.update()
        for callback in self._callbacks:
            callback.run_callback_at_location(
                self.step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION
            )
        self.step += 1
        return StepResult(self.step, float(loss.detach()), float(losses["rgb_loss"].detach()))

    def _sample_batch(
        self, targets: TargetStore, objective: TrainingObjective | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if objective is None:
            return targets.sample(self.config.rays_per_batch, self.generator)
        if objective.patch_size == 1:
            return targets.sample(objective.rays_per_batch, self.generator)
        return targets.sample_patches(
            objective.patches_per_batch, objective.patch_size, self.generator
        )

    def _objective_losses(
        self, outputs: Mapping[str, torch.Tensor], rgb: torch.Tensor, objective: TrainingObjective
    ) -> dict[str, torch.Tensor]:
        # The same background blending nerfacto applies before its own MSE.
        rendered, target = self.model.renderer_rgb.blend_background_for_loss_computation(
            pred_image=outputs["rgb"], pred_accumulation=outputs["accumulation"], gt_image=rgb
        )
        lpips = self.perceptual_distance(objective) if objective.uses_lpips else None
        return photometric_losses(rendered, target, objective, lpips)

    def perceptual_distance(self, objective: TrainingObjective) -> PerceptualDistance:
        """The LPIPS network of `objective`'s profile, loaded once per field (fixed weights,
        not part of the field's state)."""
        if self._lpips is None or self._lpips[0] != objective.lpips_profile:
            from edit3d.models.registry import load_model

            network = load_model(LPIPS_MODEL, objective.lpips_profile, device=self.device)
            self._lpips = (objective.lpips_profile, cast(PerceptualDistance, network))
        return self._lpips[1]

    def sync_schedule(self, iteration: int) -> None:
        """Set step-dependent model state (proposal annealing) as before `iteration`."""
        from nerfstudio.engine.callbacks import TrainingCallbackLocation

        for callback in self._callbacks:
            callback.run_callback_at_location(
                iteration, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION
            )

    def optimizer(self, lr: float) -> torch.optim.Optimizer:
        """Adam over nerfstudio's param groups; NeRF groups at `lr`, camera group at camera_lr."""
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if self._optimizer is None:
            groups = [
                {
                    "params": params,
                    "name": name,
                    "lr": self.config.camera_lr if name == "camera_opt" else lr,
                }
                for name, params in self.model.get_param_groups().items()
                if params
            ]
            self._optimizer = torch.optim.Adam(groups, eps=1e-15)
        for group in self._optimizer.param_groups:
            group["lr"] = self.config.camera_lr if group["name"] == "camera_opt" else lr
        return self._optimizer

    def _ray_cameras_for(self, targets: TargetStore) -> Any:
        """Training cameras at each target's size, indexed like `targets.names`."""
        key = (id(targets), targets.layout_version)
        if self._ray_cameras is not None and self._ray_cameras[:2] == key:
            return self._ray_cameras[2]
        cameras = self._cameras_at_sizes(targets)
        self._ray_cameras = (*key, cameras)
        return cameras

    def _cameras_at_sizes(self, targets: TargetStore) -> Any:
        from nerfstudio.cameras.cameras import Cameras, CameraType

        views = [self.view(name) for name in targets.names]
        intrinsics = [v.intrinsics.scaled_to(*targets.size_of(v.name)[::-1]) for v in views]
        c2w = np.stack([world_c2w_to_nerfstudio(v.c2w, self.transform, self.scale) for v in views])
        column = lambda values: torch.tensor(values, dtype=torch.float32)[:, None]  # noqa: E731
        distortion = None
        if self.distortion:
            distortion = torch.tensor(
                np.stack([self.distortion.get(v.name, np.zeros(6)) for v in views]),
                dtype=torch.float32,
            )
        cameras = Cameras(
            camera_to_worlds=torch.tensor(c2w, dtype=torch.float32),
            fx=column([i.fx for i in intrinsics]),
            fy=column([i.fy for i in intrinsics]),
            cx=column([i.cx for i in intrinsics]),
            cy=column([i.cy for i in intrinsics]),
            width=column([i.width for i in intrinsics]).long(),
            height=column([i.height for i in intrinsics]).long(),
            distortion_params=distortion,
            camera_type=CameraType.PERSPECTIVE,
        ).to(self.device)
        # The camera optimiser and appearance embedding are indexed by dataset view order.
        index_map = torch.tensor([self._view_index[n] for n in targets.names], device=self.device)
        return _IndexedCameras(cameras, index_map)

    # --- checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything `from_checkpoint` needs, as tensors and plain Python values."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            **self.frame_state(),
            "distortion": {
                k: torch.from_numpy(np.asarray(v, dtype=np.float64))
                for k, v in self.distortion.items()
            },
            "model": self.model.state_dict(),
            "optimizer": self._optimizer.state_dict() if self._optimizer is not None else None,
            "step": self.step,
            "grad_scaler": self.grad_scaler.state_dict(),
            "sampler": self._sampler_state(),
            **self.rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.step = int(state["step"])
        self.model.update_to_step(self.step)
        if state.get("sampler") is not None:
            self._set_sampler_state(state["sampler"])
        if state.get("optimizer") is not None:
            self.optimizer(1.0).load_state_dict(state["optimizer"])
        if state.get("grad_scaler"):
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        self.load_rng_state(state)

    def _sampler_state(self) -> dict[str, float]:
        sampler = self.model.proposal_sampler
        return {
            "step": int(sampler._step),
            "steps_since_update": int(sampler._steps_since_update),
            "anneal": float(sampler._anneal),
        }

    def _set_sampler_state(self, state: Mapping[str, float]) -> None:
        sampler = self.model.proposal_sampler
        sampler._step = int(state["step"])
        sampler._steps_since_update = int(state["steps_since_update"])
        sampler._anneal = float(state["anneal"])


class _IndexedCameras:
    """Training cameras in target-store order whose rays carry dataset view indices."""

    def __init__(self, cameras: Any, dataset_index: torch.Tensor) -> None:
        self.cameras = cameras
        self.dataset_index = dataset_index

    def generate_rays(self, *, camera_indices: torch.Tensor, coords: torch.Tensor) -> Any:
        bundle = self.cameras.generate_rays(camera_indices=camera_indices, coords=coords)
        bundle.camera_indices = self.dataset_index[camera_indices]
        return bundle


def _training_callbacks(model: OfflineNerfactoModel) -> list[Any]:
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes

    attributes = TrainingCallbackAttributes(
        optimizers=None, grad_scaler=None, pipeline=None, trainer=None
    )
    return list(model.get_training_callbacks(attributes))


def check_camera_model(dataset: SceneDataset) -> None:
    """Refuse a dataset whose camera model this backend would silently treat as a pinhole."""
    if dataset.camera_model not in SUPPORTED_CAMERA_MODELS:
        raise ValueError(
            f"{dataset.root}: camera model {dataset.camera_model} is not supported by the "
            f"nerfacto backend (it trains and renders {', '.join(SUPPORTED_CAMERA_MODELS)} "
            "cameras with OpenCV k1..k4, p1, p2 distortion); undistort the images first "
            "(e.g. ns-process-data or COLMAP image_undistorter)"
        )


register_backend(
    FieldBackend(
        name=NerfactoField.backend,
        checkpoint_format=CHECKPOINT_FORMAT,
        config_from_dict=FieldConfig.from_dict,
        presets=PRESETS,
        from_dataset=lambda dataset, config, device, seed: NerfactoField.from_dataset(
            dataset, config, device, seed=seed
        ),
        from_state=NerfactoField.from_state,
        nerfstudio_model="NerfactoModelConfig",
        from_nerfstudio_run=lambda config_yml, device, data: NerfactoField.from_nerfstudio_run(
            config_yml, device, data=data
        ),
        to_nerfstudio_run=write_run,
    )
)
