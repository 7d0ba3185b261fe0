"""`RadianceField`: what the rest of edit3d may ask of a 3D representation.

Turns, segmentation, the super-resolution fine-tune, exports, the sidecar and the training
runner (`edit3d.training`) speak only this protocol; a backend (nerfacto today) implements it
in `edit3d/field/` and registers itself by name (`edit3d.field.registry`).

Every camera is a world-frame `CameraView`. A backend is free in how it trains: one
`train_step` is one iteration of its own kind (a batch of rays for nerfacto, whole images for
a splatting backend), over a `TargetStore` of one target image per view; `capabilities` says
which kind it is. Nothing here assumes rays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from edit3d.field.objective import TrainingObjective
from edit3d.field.targets import TargetStore
from edit3d.scene.cameras import CameraView


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
    """Total training loss."""
    rgb_loss: float
    """The photometric part of it."""


@dataclass(frozen=True)
class FieldCapabilities:
    """What a backend can do, for callers that choose how to drive it."""

    trains_on: Literal["rays", "images"]
    """One training step samples rays across views, or renders whole images."""
    pose_correction: bool
    """Whether it learns per-view pose corrections (applied when rendering a training view)."""
    per_view_appearance: bool
    """Whether it learns a per-view appearance (used when rendering a training view)."""
    camera_models: tuple[str, ...]
    """Dataset camera models it trains and renders exactly (others are refused)."""


NEW_CAMERA_PREFIX = "camera:"
"""Prefix of names that never name a training view (see `as_new_camera`)."""


def as_new_camera(view: CameraView) -> CameraView:
    """The same camera as a new one: rendered as an ideal pinhole with no pose correction and
    the mean appearance even at a training view's pose (what exports that back-project
    depth through pinhole rays need)."""
    if view.name.startswith(NEW_CAMERA_PREFIX):
        return view
    return CameraView(NEW_CAMERA_PREFIX + view.name, view.c2w, view.intrinsics)


@runtime_checkable
class RadianceField(Protocol):
    """A trainable 3D scene representation over a dataset's views, in its world frame."""

    backend: str
    """Registry name of the backend ("nerfacto")."""
    capabilities: FieldCapabilities
    config: Any
    """The backend's settings (a dataclass with `to_dict`), e.g. `FieldConfig`."""
    views: list[CameraView]
    """Training views, in the order the backend indexes them."""
    step: int
    """Training iterations done over the field's whole life."""
    device: str

    def view(self, name: str) -> CameraView:
        """The training view called `name` (its dataset file name)."""
        ...

    def training_size(self, view: CameraView) -> tuple[int, int]:
        """(height, width) the view's dataset image is trained at."""
        ...

    def dataset_images(self) -> dict[str, np.ndarray]:
        """The images the field trains on, keyed by view name, at their training size."""
        ...

    def make_targets(self, images: Mapping[str, np.ndarray]) -> TargetStore:
        """A target store over `images` (keys: view names of this field)."""
        ...

    def render(
        self, view: CameraView, *, width: int | None = None, height: int | None = None
    ) -> RenderResult:
        """Render a world-frame camera. A training view (same name and pose) renders as it is
        trained: its camera model, distortion, pose correction and appearance; any other
        camera is an ideal pinhole with no correction and the mean appearance."""
        ...

    def train_step(
        self, targets: TargetStore, *, lr: float, objective: TrainingObjective | None = None
    ) -> StepResult:
        """One training iteration toward `targets` at learning rate `lr`, with the loss and
        batch of `objective` (None: the backend's own, as base training uses)."""
        ...

    def sync_schedule(self, iteration: int) -> None:
        """Set step-dependent state (e.g. annealing) as it is before `iteration`."""
        ...

    def points_to_world(self, points_field: np.ndarray) -> np.ndarray:
        """[N, 3] field-frame points → world points."""
        ...

    def scene_bounds_world(self) -> np.ndarray:
        """[2, 3] world-frame box around the region the field models."""
        ...

    def gaussians(self) -> Any:
        """The field's 3D Gaussians as `edit3d.export.geometry.GaussianSplats` in the field
        frame (`edit3d.export.splats` carries them to the world), or None for a field that is
        not made of Gaussians."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the field, as tensors and plain values."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore weights, optimiser, schedule and random state saved by `state_dict`."""
        ...

    def save_checkpoint(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write `state_dict()` (plus `extra`) atomically; loadable with weights_only."""
        ...
