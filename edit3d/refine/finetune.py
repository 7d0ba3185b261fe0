"""Super-resolution fine-tune of an edited field (paper Sec. 3.3).

1. Render every training view from the edited field (at its training size).
2. Upscale each render: Real-ESRGAN everywhere, GFPGAN on detected faces (`upscale_view`).
3. Fine-tune the field on the high-resolution renders as targets (a `TrainingRun` that
   also saves its iteration count): the field trains at the targets' resolution, so it
   learns the sharper detail.

Stage 2 runs once, before training: the paper tried upscaling inside the edit loop and
found it too slow for multi-turn editing; after the edits it is a one-off cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edit3d.field.radiance import RadianceField
from edit3d.models.sr import FaceRestorer, SuperResolver
from edit3d.progress import (
    CancelToken,
    JobProgress,
    PhasePlan,
    ProgressCallback,
    ProgressEvent,
    no_progress,
)
from edit3d.refine.faces import FaceDetector
from edit3d.refine.upscale import upscale_view_with_faces
from edit3d.scene.cameras import CameraView
from edit3d.training import TrainingRun

# Expected cost of one step of each phase, in full-view renders, for the one progress bar
# (measured costs take over as the phases run): an upscaled view is a render plus Real-ESRGAN
# x4; paper Tab. 2 has 10k fine-tune iterations in 4.45 min on a 3090 (~0.027 s each, a
# nerfacto full-view render ~0.5 s).
_UPSCALE_COST = 1.5
_FINETUNE_STEP_COST = 0.05


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the super-resolution fine-tune."""

    steps: int = 10_000
    """Fine-tune iterations on the upscaled targets (paper: 10k, under 5 min on a 3090)."""
    lr: float = 0.0025
    """Adam learning rate of the NeRF parameters (the paper keeps the editing rate)."""
    scale: int = 4
    """Target size = render size x scale (the Real-ESRGAN x4plus factor; 2 downsamples
    its output by 2)."""
    target_long_side: int | None = None
    """Cap on the targets' longer side in pixels (memory: every target stays in memory)."""
    render_long_side: int | None = None
    """Longer side of the renders that are upscaled (None: the field's training size)."""
    faces: bool = True
    """Restore faces with GFPGAN (needs a face detector)."""
    face_crop_scale: float = 2.0
    """Face crop side / detected box side (GFPGAN expects the face plus some context)."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.target_long_side is not None and self.target_long_side < 1:
            raise ValueError(f"target_long_side must be >= 1, got {self.target_long_side}")


@dataclass
class RefineResult:
    """What the fine-tune did."""

    targets: dict[str, np.ndarray]
    """The high-resolution targets by view name."""
    render_size: tuple[int, int]
    """(height, width) of the renders that were upscaled (first view)."""
    target_size: tuple[int, int]
    """(height, width) of the targets (first view)."""
    faces: int
    """Faces restored with GFPGAN, over all views."""
    upscale_seconds: float
    """Wall time of rendering + upscaling."""
    train_seconds: float
    """Wall time of the fine-tune iterations."""
    final_loss: float | None
    """Training loss of the last iteration (None if no step ran)."""
    models: dict[str, str] = field(default_factory=dict)
    """Which networks produced the targets (names say "(tiny)" for pipeline checks)."""
    hook_seconds: float = 0.0
    """Wall time spent in the `on_step` hook (e.g. previews), not counted as training."""


def training_render_size(
    view: CameraView, field: RadianceField, long_side: int | None
) -> tuple[int, int]:
    """(width, height) the field trains this view at, or capped to `long_side`."""
    width, height = view.intrinsics.width, view.intrinsics.height
    cap = long_side if long_side is not None else getattr(field.config, "max_image_size", None)
    if cap is None or max(width, height) <= cap:
        return width, height
    factor = cap / max(width, height)
    return max(round(width * factor), 1), max(round(height * factor), 1)


def target_size(render_hw: tuple[int, int], config: RefineConfig) -> tuple[int, int]:
    """(height, width) of a target for a render of `render_hw`."""
    height, width = render_hw[0] * config.scale, render_hw[1] * config.scale
    if config.target_long_side is not None and max(height, width) > config.target_long_side:
        factor = config.target_long_side / max(height, width)
        height, width = max(round(height * factor), 1), max(round(width * factor), 1)
    return height, width


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (height, width):
        return image
    interpolation = cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_CUBIC
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def make_targets(
    field: RadianceField,
    esrgan: SuperResolver,
    config: RefineConfig,
    *,
    gfpgan: FaceRestorer | None = None,
    detector: FaceDetector | None = None,
    views: Sequence[CameraView] | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Renders and upscales the views; returns ({view name: target}, faces restored)."""
    chosen = list(views if views is not None else field.views)
    use_faces = config.faces and gfpgan is not None and detector is not None
    targets: dict[str, np.ndarray] = {}
    faces = 0
    for index, view in enumerate(chosen):
        if cancel is not None:
            cancel.raise_if_cancelled()
        width, height = training_render_size(view, field, config.render_long_side)
        render = np.asarray(field.render(view, width=width, height=height).rgb, np.float32)
        upscaled, pastes = upscale_view_with_faces(
            render,
            esrgan,
            gfpgan if use_faces else None,
            detector if use_faces else None,
            face_crop_scale=config.face_crop_scale,
        )
        targets[view.name] = _resize(upscaled, *target_size((height, width), config))
        faces += len(pastes)
        progress(
            ProgressEvent(
                "refine_upscale",
                index + 1,
                len(chosen),
                message=f"upscaled {view.name}",
                extra={"view": view.name, "faces": len(pastes)},
            )
        )
    return targets, faces


@dataclass(frozen=True)
class RefineState:
    """Where a fine-tune keeps what it needs to resume: its targets and a periodic checkpoint.

    The targets are written once, before training (``targets/``); the checkpoint every
    `checkpoint_every` iterations and on cancel. A run given a state that already holds
    targets skips upscaling; one whose checkpoint exists continues from its iteration.
    """

    folder: Path
    """Folder of the run (a refine node's folder): ``targets/`` and the checkpoint."""
    checkpoint_every: int = 0
    """Iterations between periodic checkpoints (0: only on cancel)."""
    checkpoint_name: str = "checkpoint.pt"
    """File name of the checkpoint inside `folder`."""

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")

    @property
    def targets_dir(self) -> Path:
        return Path(self.folder) / TARGETS_DIR

    @property
    def checkpoint(self) -> Path:
        return Path(self.folder) / self.checkpoint_name

    def has_targets(self) -> bool:
        """Whether the targets were saved completely (their index file is written last)."""
        return (self.targets_dir / TARGETS_INDEX).is_file()

    def saved_step(self) -> int | None:
        """Fine-tune iterations done at the last checkpoint (None: no checkpoint yet)."""
        state = self._load_checkpoint()
        return None if state is None else int(state["extra"][CHECKPOINT_KEY])

    def _load_checkpoint(self) -> dict[str, Any] | None:
        import torch

        if not self.checkpoint.is_file():
            return None
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        return state if CHECKPOINT_KEY in state.get("extra", {}) else None


TARGETS_DIR = "targets"
TARGETS_INDEX = "targets.json"
CHECKPOINT_KEY = "refine_step"


def finetune_super_resolution(
    field: RadianceField,
    config: RefineConfig | None = None,
    *,
    esrgan: SuperResolver | None = None,
    gfpgan: FaceRestorer | None = None,
    detector: FaceDetector | None = None,
    profile: Literal["real", "tiny"] = "real",
    device: str = "cpu",
    targets: Mapping[str, np.ndarray] | None = None,
    state: RefineState | None = None,
    on_step: Callable[[int], None] | None = None,
    done: int = 0,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> RefineResult:
    """Upscales the field's training views and fine-tunes the field on them, in place.

    Missing networks are loaded from the registry under `profile` ("tiny": random pipeline
    check), and only when there is something to upscale. `state` makes the run resumable
    (see `RefineState`): its saved targets replace upscaling, its checkpoint is loaded into
    `field` and training continues from its iteration. Without a state, `targets` skip
    upscaling and `done` iterations count as already trained. `on_step(n)` runs after
    fine-tune iteration n (counted from the start of the fine-tune, 1 to `config.steps`),
    e.g. to render a live preview; its time is reported apart from training.
    """
    config = config or RefineConfig()
    progress = JobProgress(
        [
            PhasePlan("refine_upscale", len(field.views), _UPSCALE_COST),
            PhasePlan("refine", config.steps, _FINETUNE_STEP_COST),
        ],
        progress,
    )
    start = time.monotonic()
    targets, faces, models = _targets_for(
        field, config, targets, state, profile, device, esrgan, gfpgan, detector,
        progress, cancel,
    )  # fmt: skip
    upscale_seconds = time.monotonic() - start
    if state is not None:
        done = _restore(field, state, done)
    training = _RefineTraining(
        field, field.make_targets(targets), total=config.steps, lr=config.lr, done=done,
        phase="refine", checkpoint=state.checkpoint if state is not None else None,
        checkpoint_every=state.checkpoint_every if state is not None else 0,
        on_step=None if on_step is None else (lambda _field, n: on_step(n)),
        progress=progress, cancel=cancel,
    )  # fmt: skip
    step = training.run()
    first = next(iter(targets))
    view = next(v for v in field.views if v.name == first)
    render_wh = training_render_size(view, field, config.render_long_side)
    return RefineResult(
        targets=targets,
        render_size=(render_wh[1], render_wh[0]),
        target_size=targets[first].shape[:2],
        faces=faces,
        upscale_seconds=upscale_seconds,
        train_seconds=training.timings.get("train", 0.0),
        final_loss=None if step is None else float(step.loss),
        models=models,
        hook_seconds=training.timings.get("preview", 0.0),
    )


def _targets_for(
    field: RadianceField,
    config: RefineConfig,
    given: Mapping[str, np.ndarray] | None,
    state: RefineState | None,
    profile: Literal["real", "tiny"],
    device: str,
    esrgan: SuperResolver | None,
    gfpgan: FaceRestorer | None,
    detector: FaceDetector | None,
    progress: ProgressCallback,
    cancel: CancelToken | None,
) -> tuple[dict[str, np.ndarray], int, dict[str, str]]:
    """(targets, faces restored, models used): saved ones, given ones, or upscaled now."""
    if state is not None and state.has_targets():
        return load_targets(state.targets_dir), 0, {"esrgan": "saved targets", "gfpgan": "none"}
    if given is not None:
        return dict(given), 0, {"esrgan": "given targets", "gfpgan": "none"}
    esrgan, gfpgan, detector = load_sr_networks(
        config, profile, device, esrgan=esrgan, gfpgan=gfpgan, detector=detector
    )
    targets, faces = make_targets(
        field, esrgan, config, gfpgan=gfpgan, detector=detector, progress=progress,
        cancel=cancel,
    )  # fmt: skip
    if state is not None:
        # Train on the saved (8-bit) pixels, so that a resumed run sees the same targets.
        targets = load_targets(save_targets(state.targets_dir, targets))
    models = {"esrgan": esrgan.name, "gfpgan": gfpgan.name if gfpgan is not None else "none"}
    return targets, faces, models


class _RefineTraining(TrainingRun):
    """The field's training, with the fine-tune's own iteration count in each checkpoint."""

    def checkpoint_extra(self) -> dict[str, Any]:
        return {CHECKPOINT_KEY: self.next_step}


def _restore(field: RadianceField, state: RefineState, done: int) -> int:
    """Load the state's checkpoint into `field`; the iterations it had done (else `done`)."""
    saved = state._load_checkpoint()
    if saved is None:
        return done
    field.load_state_dict(saved)
    return int(saved["extra"][CHECKPOINT_KEY])


def load_sr_networks(
    config: RefineConfig,
    profile: Literal["real", "tiny"] = "real",
    device: str = "cpu",
    *,
    esrgan: SuperResolver | None = None,
    gfpgan: FaceRestorer | None = None,
    detector: FaceDetector | None = None,
) -> tuple[SuperResolver, FaceRestorer | None, FaceDetector | None]:
    """The given networks, the missing ones loaded from the registry under `profile`
    (GFPGAN and the face detector only when `config.faces`)."""
    from edit3d.models.registry import load_model
    from edit3d.models.sr import GFPGAN_V14, REALESRGAN_X4PLUS

    if esrgan is None:
        esrgan = load_model(REALESRGAN_X4PLUS, profile, device=device)  # type: ignore[assignment]
    if config.faces and gfpgan is None:
        gfpgan = load_model(GFPGAN_V14, profile, device=device)  # type: ignore[assignment]
    if config.faces and detector is None:
        detector = load_model("yunet-face", profile, device=device)  # type: ignore[assignment]
    return esrgan, gfpgan, detector  # type: ignore[return-value]


# --- targets on disk (so an interrupted fine-tune resumes without re-upscaling) -----------


def save_targets(folder: Path, targets: Mapping[str, np.ndarray]) -> Path:
    """Writes each target as an 8-bit PNG under `folder`, named by an index file."""
    import json

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for index, (name, image) in enumerate(targets.items()):
        file_name = f"target_{index:05d}.png"
        pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / file_name)
        names[name] = file_name
    (folder / TARGETS_INDEX).write_text(json.dumps(names, indent=1))
    return folder


def load_targets(folder: Path) -> dict[str, np.ndarray]:
    """Reads targets written by `save_targets`, keyed by view name."""
    import json

    from PIL import Image

    folder = Path(folder)
    names = json.loads((folder / TARGETS_INDEX).read_text())
    return {
        name: np.asarray(Image.open(folder / file_name).convert("RGB"), np.float32) / 255.0
        for name, file_name in names.items()
    }
