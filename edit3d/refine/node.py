"""The fine-tune as a "refine" node of a workspace's history.

The node starts from a finished parent (default: head), writes its upscaled targets to its
folder (``targets/``) before training and a periodic checkpoint while training, and
finishes as the new head. Cancel, failure or interruption leave the parent untouched and
the node marked accordingly, with the targets and the last checkpoint on disk; such a node
resumes (`resume_refine`, or `Workspace.resume_turn`) from them without upscaling again.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

from edit3d.models.sr import FaceRestorer, SuperResolver
from edit3d.progress import CancelToken, ProgressCallback, no_progress
from edit3d.refine.faces import FaceDetector
from edit3d.refine.finetune import (
    TARGETS_DIR,
    RefineConfig,
    RefineState,
    finetune_super_resolution,
)
from edit3d.training import StepHook

__all__ = ["TARGETS_DIR", "resume_refine", "run_refine"]


@dataclasses.dataclass(frozen=True)
class _Networks:
    """Networks given by the caller (the rest are loaded from the registry if needed)."""

    esrgan: SuperResolver | None = None
    gfpgan: FaceRestorer | None = None
    detector: FaceDetector | None = None


def run_refine(
    workspace: Any,
    parent: str | None = None,
    config: RefineConfig | None = None,
    *,
    profile: Literal["real", "tiny"] = "real",
    esrgan: SuperResolver | None = None,
    gfpgan: FaceRestorer | None = None,
    detector: FaceDetector | None = None,
    on_step: StepHook | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> Any:
    """Fine-tunes `parent`'s field on super-resolved renders as a new "refine" node.

    workspace: an `edit3d.workspace.Workspace`; returns the finished node's record.
    `on_step(field, n)` runs after each fine-tune iteration n (e.g. live previews).
    """
    config = config or RefineConfig()
    parent = parent or workspace.head
    if parent is None:
        raise ValueError("parent: the workspace has no finished node to refine (train first)")
    record = workspace.start_node(
        "refine", parent, {**dataclasses.asdict(config), "profile": profile}
    )
    networks = _Networks(esrgan, gfpgan, detector)
    return _run_node(workspace, record, config, profile, networks, on_step, progress, cancel)


def resume_refine(
    workspace: Any,
    turn_id: str,
    *,
    esrgan: SuperResolver | None = None,
    gfpgan: FaceRestorer | None = None,
    detector: FaceDetector | None = None,
    on_step: StepHook | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> Any:
    """Continues an interrupted or cancelled refine node from its last checkpoint.

    Its saved targets are reused (upscaling runs again only if it stopped before they were
    all written); returns the finished node's record.
    """
    record = workspace.reopen_node(turn_id, "refine")
    config, profile = refine_params(record.spec)
    networks = _Networks(esrgan, gfpgan, detector)
    return _run_node(workspace, record, config, profile, networks, on_step, progress, cancel)


def refine_params(spec: dict[str, Any]) -> tuple[RefineConfig, Literal["real", "tiny"]]:
    """The RefineConfig and network profile a refine node was started with."""
    names = {f.name for f in dataclasses.fields(RefineConfig)}
    return RefineConfig(**{k: v for k, v in spec.items() if k in names}), spec.get(
        "profile", "real"
    )


def _run_node(
    workspace: Any,
    record: Any,
    config: RefineConfig,
    profile: Literal["real", "tiny"],
    networks: _Networks,
    on_step: StepHook | None,
    progress: ProgressCallback,
    cancel: CancelToken | None,
) -> Any:
    """Fine-tune a running refine node's parent into it, resumable from its folder."""
    with workspace.node_outcome(record.id) as timings:
        started = time.monotonic()
        field = workspace.load_field(record.parent)
        _add(timings, "load_s", time.monotonic() - started)
        state = RefineState(
            workspace.node_dir(record.id),
            checkpoint_every=int(getattr(field.config, "checkpoint_every", 0) or 0),
            checkpoint_name=Path(record.paths["checkpoint"]).name,
        )
        result = finetune_super_resolution(
            field,
            config,
            esrgan=networks.esrgan,
            gfpgan=networks.gfpgan,
            detector=networks.detector,
            profile=profile,
            device=workspace.device,
            state=state,
            on_step=None if on_step is None else (lambda n: on_step(field, n)),
            progress=progress,
            cancel=cancel,
        )
        _add(timings, "upscale_s", result.upscale_seconds)
        _add(timings, "train_s", result.train_seconds)
        _add(timings, "faces", float(result.faces))
        if on_step is not None:
            _add(timings, "preview_s", result.hook_seconds)
    return workspace.finish_node(record.id, field, timings)


def _add(timings: dict[str, float], key: str, value: float) -> None:
    timings[key] = timings.get(key, 0.0) + value
