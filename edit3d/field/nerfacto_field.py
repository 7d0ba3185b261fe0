"""`NerfactoField`: a nerfacto model that speaks the dataset's world frame.

Poses in and geometry out are in the dataset's world frame (OpenGL camera convention);
inside, nerfstudio's dataparser transform and scale apply:

    p_field = scale * (T @ p_world)          (T: 3x4 rotation + translation)

Training is a small loop of our own over an in-memory `TargetStore` (one target per view,
replaceable by name), with nerfstudio's model, losses and training callbacks; one call of
`train_step` is one nerfstudio training iteration, and `fit(on_step=...)` is the hook an
editing turn uses to swap targets between iterations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edit3d.field.model import OfflineNerfactoModel, build_nerfacto
from edit3d.field.presets import FieldConfig
from edit3d.field.targets import TargetStore
from edit3d.progress import CancelToken, EtaClock, ProgressCallback, ProgressEvent, no_progress
from edit3d.scene.cameras import CameraView, Intrinsics
from edit3d.scene.dataset import SceneDataset, load_dataset, world_c2w_to_nerfstudio

CHECKPOINT_FORMAT = "edit3d-nerfacto-field"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class RenderResult:
    """One rendered view."""

    rgb: np.ndarray
    """float32 [H, W, 3] in [0, 1]."""
    depth: np.ndarray
    """float32 [H, W]: distance along each ray to the median of its weights, world units."""
    accumulation: np.ndarray
    """float32 [H, W]: opacity of each ray in [0, 1]."""


@dataclass(frozen=True)
class StepResult:
    """What one training iteration reports."""

    step: int
    """Global iteration count after this step."""
    loss: float
    """Total nerfacto loss."""
    rgb_loss: float
    """The photometric part of it (MSE)."""


class NerfactoField:
    """A nerfacto radiance field over a dataset's views (see module docstring)."""

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
        if not views:
            raise ValueError("views must hold at least one camera, got none")
        self.config = config
        self.views = list(views)
        self.device = device
        self.dataset_root = dataset_root
        self.transform = np.asarray(transform, dtype=np.float64).reshape(3, 4)
        self.scale = float(scale)
        self.scene_aabb = np.asarray(scene_aabb, dtype=np.float64)
        self.distortion = dict(distortion or {})
        self._view_index = {view.name: i for i, view in enumerate(self.views)}
        if len(self._view_index) != len(self.views):
            raise ValueError("views must have unique names")
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
        self._callbacks = _training_callbacks(model)
        self._ray_cameras: tuple[int, int, Any] | None = None
        self._dataset: SceneDataset | None = None

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
        # Loaded on CPU: RNG states must stay CPU tensors, and load_state_dict moves the
        # model's and optimizer's tensors to the field's device.
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"path is not an {CHECKPOINT_FORMAT} checkpoint: {str(path)!r}")
        field = cls(
            FieldConfig.from_dict(state["config"]),
            [_view_from_dict(v) for v in state["views"]],
            state["transform"].numpy(),
            float(state["scale"]),
            state["scene_aabb"].numpy(),
            device=device,
            dataset_root=Path(state["dataset_root"]) if state["dataset_root"] else None,
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

    @property
    def world_to_field(self) -> np.ndarray:
        """[4, 4] matrix taking world points to field (nerfstudio) points: scale · T."""
        matrix = np.vstack([self.transform, [0.0, 0.0, 0.0, 1.0]])
        matrix[:3] *= self.scale
        return matrix

    @property
    def field_to_world(self) -> np.ndarray:
        """[4, 4] inverse of `world_to_field`."""
        return np.linalg.inv(self.world_to_field)

    def points_to_world(self, points_field: np.ndarray) -> np.ndarray:
        """[N, 3] field-frame points → world points."""
        m = self.field_to_world
        return np.asarray(points_field, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]

    def points_to_field(self, points_world: np.ndarray) -> np.ndarray:
        """[N, 3] world points → field-frame points."""
        m = self.world_to_field
        return np.asarray(points_world, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]

    def scene_bounds_world(self) -> np.ndarray:
        """[2, 3] world-frame axis-aligned box around nerfstudio's scene box."""
        lo, hi = self.scene_aabb
        corners = np.array(
            [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        world = self.points_to_world(corners)
        return np.stack([world.min(axis=0), world.max(axis=0)])

    def view(self, name: str) -> CameraView:
        if name not in self._view_index:
            raise ValueError(f"name must be a view of this field, got {name!r}")
        return self.views[self._view_index[name]]

    # --- data ------------------------------------------------------------------------

    def dataset_images(self) -> dict[str, np.ndarray]:
        """The dataset's images keyed by view name, at the preset's training size."""
        dataset = self._dataset
        if dataset is None:
            if self.dataset_root is None or not self.dataset_root.exists():
                raise FileNotFoundError(
                    f"dataset of this field is not available: {self.dataset_root}"
                )
            dataset = self._dataset = load_dataset(self.dataset_root)
        return dataset.images(max_size=self.config.max_image_size)

    def training_size(self, view: CameraView) -> tuple[int, int]:
        """(height, width) the view's dataset image has once loaded at the preset's size."""
        intr = view.intrinsics
        longest = max(intr.width, intr.height)
        limit = self.config.max_image_size
        if limit is None or longest <= limit:
            return intr.height, intr.width
        ratio = limit / longest
        return max(1, round(intr.height * ratio)), max(1, round(intr.width * ratio))

    def make_targets(self, images: Mapping[str, np.ndarray]) -> TargetStore:
        """A target store over `images` (keys must be view names of this field)."""
        unknown = [name for name in images if name not in self._view_index]
        if unknown:
            raise ValueError(f"images must be keyed by view names of this field, got {unknown[:3]}")
        return TargetStore(images, device=self.device)

    # --- rendering -------------------------------------------------------------------

    def nerfstudio_camera(
        self, view: CameraView, width: int | None = None, height: int | None = None
    ) -> Any:
        """nerfstudio's Cameras (one camera, field frame) for a world-frame view."""
        from nerfstudio.cameras.cameras import Cameras, CameraType

        intr = view.intrinsics
        if width is not None or height is not None:
            intr = intr.scaled_to(
                width or _keep_aspect(intr, height, "w"), height or _keep_aspect(intr, width, "h")
            )
        c2w = world_c2w_to_nerfstudio(view.c2w, self.transform, self.scale)
        return Cameras(
            camera_to_worlds=torch.tensor(c2w, dtype=torch.float32)[None],
            fx=float(intr.fx),
            fy=float(intr.fy),
            cx=float(intr.cx),
            cy=float(intr.cy),
            width=int(intr.width),
            height=int(intr.height),
            camera_type=CameraType.PERSPECTIVE,
        ).to(self.device)

    @torch.no_grad()
    def render(
        self, view: CameraView, *, width: int | None = None, height: int | None = None
    ) -> RenderResult:
        """Render a world-frame camera, optionally at another resolution (same field of view)."""
        return self.render_nerfstudio_camera(self.nerfstudio_camera(view, width, height))

    @torch.no_grad()
    def render_nerfstudio_camera(self, camera: Any) -> RenderResult:
        """Render a nerfstudio Cameras object already in the field frame."""
        was_training = self.model.training
        sampler_state = self._sampler_state()
        self.model.eval()
        try:
            outputs = self.model.get_outputs_for_camera(camera)
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

    # --- training --------------------------------------------------------------------

    def fit(
        self,
        targets: TargetStore,
        steps: int,
        *,
        lr: float,
        on_step: Callable[[int], None] | None = None,
        progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        phase: str = "train",
        total: int | None = None,
        done: int = 0,
    ) -> StepResult | None:
        """Train `steps` iterations on `targets`; `on_step(i)` runs before iteration i.

        `on_step` may replace targets (an editing turn does) or save a checkpoint; `done` and
        `total` let a resumed run report progress over the whole operation.
        """
        if steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {steps}")
        total = done + steps if total is None else total
        clock = EtaClock(total)
        clock.restart_at(done)
        result = None
        for i in range(done, done + steps):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if on_step is not None:
                on_step(i)
            result = self.train_step(targets, lr=lr)
            progress(ProgressEvent(phase, i + 1, total, loss=result.loss, eta_s=clock.eta(i + 1)))
        return result

    def train_step(self, targets: TargetStore, *, lr: float) -> StepResult:
        """One nerfacto training iteration on a random ray batch drawn across all views."""
        from nerfstudio.engine.callbacks import TrainingCallbackLocation

        self.model.train()
        optimizer = self.optimizer(lr)
        for callback in self._callbacks:
            callback.run_callback_at_location(
                self.step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION
            )
        view_index, coords, rgb = targets.sample(self.config.rays_per_batch, self.generator)
        ray_bundle = self._ray_cameras_for(targets).generate_rays(
            camera_indices=view_index[:, None], coords=coords
        )
        outputs = self.model(ray_bundle)  # collider, then get_outputs
        batch = {"image": rgb}
        metrics = self.model.get_metrics_dict(outputs, batch)
        losses = self.model.get_loss_dict(outputs, batch, metrics)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for callback in self._callbacks:
            callback.run_callback_at_location(
                self.step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION
            )
        self.step += 1
        return StepResult(self.step, float(loss.detach()), float(losses["rgb_loss"].detach()))

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
            "views": [_view_to_dict(v) for v in self.views],
            "transform": torch.from_numpy(self.transform.copy()),
            "scale": self.scale,
            "scene_aabb": torch.from_numpy(self.scene_aabb.copy()),
            "dataset_root": str(self.dataset_root) if self.dataset_root else "",
            "distortion": {
                k: torch.from_numpy(np.asarray(v, dtype=np.float64))
                for k, v in self.distortion.items()
            },
            "model": self.model.state_dict(),
            "optimizer": self._optimizer.state_dict() if self._optimizer is not None else None,
            "step": self.step,
            "sampler": self._sampler_state(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.step = int(state["step"])
        self.model.update_to_step(self.step)
        if state.get("sampler") is not None:
            self._set_sampler_state(state["sampler"])
        if state.get("optimizer") is not None:
            self.optimizer(1.0).load_state_dict(state["optimizer"])
        if state.get("generator") is not None:
            self.generator.set_state(state["generator"].cpu())
        if state.get("torch_rng") is not None:
            torch.set_rng_state(state["torch_rng"].cpu())

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

    def save_checkpoint(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the field (and `extra` state, e.g. a turn's) atomically to one torch file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        if extra:
            state["extra"] = dict(extra)
        tmp = path.with_name(f".{path.name}.{time.monotonic_ns()}.tmp")
        try:
            torch.save(state, tmp)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. a full disk: no stray temp file stays behind
            raise
        return path


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


def _keep_aspect(intr: Intrinsics, other: int | None, which: str) -> int:
    if other is None:
        return intr.width if which == "w" else intr.height
    ratio = intr.width / intr.height
    return max(1, round(other * ratio)) if which == "w" else max(1, round(other / ratio))


def _view_to_dict(view: CameraView) -> dict[str, Any]:
    i = view.intrinsics
    return {
        "name": view.name,
        "c2w": torch.from_numpy(view.c2w.copy()),
        "intrinsics": [i.fx, i.fy, i.cx, i.cy, i.width, i.height],
    }


def _view_from_dict(data: Mapping[str, Any]) -> CameraView:
    fx, fy, cx, cy, width, height = data["intrinsics"]
    return CameraView(
        data["name"], data["c2w"].numpy(), Intrinsics(fx, fy, cx, cy, int(width), int(height))
    )
