"""What every dataset-backed field shares: its frames, its views, its images, its files.

A backend's field class (`NerfactoField`, `SplatfactoField`) inherits `DatasetField` and sets
the attributes its `__init__` documents; training and rendering are the backend's own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edit3d.field.targets import TargetStore
from edit3d.scene.cameras import CameraView, Intrinsics
from edit3d.scene.dataset import SceneDataset, load_dataset


class DatasetField:
    """Frames, views, images and checkpoint files of a field over a dataset's views.

    Subclasses call `_init_frames` and provide `config` (with `max_image_size`), `device`
    and `state_dict()`.
    """

    config: Any
    device: str
    generator: torch.Generator
    """The backend's own sampling generator (views, rays), saved with its checkpoints."""

    def _init_frames(
        self,
        views: list[CameraView],
        transform: np.ndarray,
        scale: float,
        scene_aabb: np.ndarray,
        dataset_root: Path | None,
        distortion: Mapping[str, np.ndarray] | None,
    ) -> None:
        if not views:
            raise ValueError("views must hold at least one camera, got none")
        self.views = list(views)
        self.dataset_root = dataset_root
        self.transform = np.asarray(transform, dtype=np.float64).reshape(3, 4)
        self.scale = float(scale)
        self.scene_aabb = np.asarray(scene_aabb, dtype=np.float64)
        self.distortion = dict(distortion or {})
        self._view_index = {view.name: i for i, view in enumerate(self.views)}
        if len(self._view_index) != len(self.views):
            raise ValueError("views must have unique names")
        self._dataset: SceneDataset | None = None

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    # --- checkpoint parts every backend saves ----------------------------------------

    def frame_state(self) -> dict[str, Any]:
        """The views and frames part of a checkpoint (tensors and plain values)."""
        return {
            "views": [view_to_dict(v) for v in self.views],
            "transform": torch.from_numpy(self.transform.copy()),
            "scale": self.scale,
            "scene_aabb": torch.from_numpy(self.scene_aabb.copy()),
            "dataset_root": str(self.dataset_root) if self.dataset_root else "",
        }

    @staticmethod
    def frame_arguments(state: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments (views, transform, scale, scene_aabb, dataset_root) of
        a checkpoint's `frame_state()` part."""
        return {
            "views": [view_from_dict(v) for v in state["views"]],
            "transform": state["transform"].numpy(),
            "scale": float(state["scale"]),
            "scene_aabb": state["scene_aabb"].numpy(),
            "dataset_root": Path(state["dataset_root"]) if state["dataset_root"] else None,
        }

    def rng_state(self) -> dict[str, Any]:
        """The random states a resumed field needs to continue exactly: the field's own
        generator and torch's global one (nerfstudio's samplers and splatfacto's
        densification draw from it)."""
        return {"generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}

    def load_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `rng_state()` saved (either part may be absent)."""
        if state.get("generator") is not None:
            self.generator.set_state(state["generator"].cpu())
        if state.get("torch_rng") is not None:
            torch.set_rng_state(state["torch_rng"].cpu())

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

    def gaussians(self) -> Any:
        """None: not a Gaussian field (a Gaussian backend overrides this)."""
        return None

    def view(self, name: str) -> CameraView:
        if name not in self._view_index:
            raise ValueError(f"name must be a view of this field, got {name!r}")
        return self.views[self._view_index[name]]

    # --- data ------------------------------------------------------------------------

    def dataset_images(self) -> dict[str, np.ndarray]:
        """The images of the field's views (an imported run's training split, not any
        held-out view), keyed by view name, at the preset's training size."""
        dataset = self._dataset
        if dataset is None:
            if self.dataset_root is None or not self.dataset_root.exists():
                raise FileNotFoundError(
                    f"dataset of this field is not available: {self.dataset_root}"
                )
            dataset = self._dataset = load_dataset(self.dataset_root)
        size = self.config.max_image_size
        return {view.name: dataset.image(view.name, max_size=size) for view in self.views}

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

    def training_index(self, view: CameraView) -> int | None:
        """The view's index if it is a training view (same name, pose and intrinsics)."""
        index = self._view_index.get(view.name)
        if index is None:
            return None
        own = self.views[index]
        same_pose = np.allclose(own.c2w, view.c2w, atol=1e-6)
        same_lens = np.allclose(lens_of(own.intrinsics), lens_of(view.intrinsics), atol=1e-6)
        return index if same_pose and same_lens else None

    # --- files ----------------------------------------------------------------------

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


def write_run(field: Any, out: Path, experiment: str, timestamp: str) -> Path:
    """A dataset field as an ns-train run folder (every backend's `to_nerfstudio_run`)."""
    from edit3d.field.nerfstudio_export import write_nerfstudio_run  # imports the backends

    return write_nerfstudio_run(field, out, experiment=experiment, timestamp=timestamp)


def keep_aspect(intr: Intrinsics, other: int | None, which: str) -> int:
    if other is None:
        return intr.width if which == "w" else intr.height
    ratio = intr.width / intr.height
    return max(1, round(other * ratio)) if which == "w" else max(1, round(other / ratio))


def lens_of(intr: Intrinsics) -> tuple[float, ...]:
    return (intr.fx, intr.fy, intr.cx, intr.cy, float(intr.width), float(intr.height))


def view_to_dict(view: CameraView) -> dict[str, Any]:
    i = view.intrinsics
    return {
        "name": view.name,
        "c2w": torch.from_numpy(view.c2w.copy()),
        "intrinsics": [i.fx, i.fy, i.cx, i.cy, i.width, i.height],
    }


def view_from_dict(data: Mapping[str, Any]) -> CameraView:
    fx, fy, cx, cy, width, height = data["intrinsics"]
    return CameraView(
        data["name"], data["c2w"].numpy(), Intrinsics(fx, fy, cx, cy, int(width), int(height))
    )
