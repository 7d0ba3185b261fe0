"""The fine-tune as a "refine" node of a workspace's history.

The node starts from a finished parent (default: head), writes its upscaled targets to its
folder (``targets/``) before training and a periodic checkpoint while training, and
finishes as the new head. Cancel, failure or interruption leave the parent untouched and
the node marked accordingly, with the targets and the last checkpoint on disk.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

from edit3d.models.sr import FaceRestorer, SuperResolver
from edit3d.progress import Cancelled, CancelToken, ProgressCallback, no_progress
from edit3d.refine.faces import FaceDetector
from edit3d.refine.finetune import (
    RefineConfig,
    finetune_super_resolution,
    load_sr_networks,
    make_targets,
    save_targets,
)

TARGETS_DIR = "targets"


def run_refine(
    workspace: Any,
    parent: str | None = None,
    config: RefineConfig | None = None,
    *,
    profile: Literal["real", "tiny"] = "real",
    esrgan: SuperResolver | None = None,
    gfpgan: FaceRestorer | None = None,
    detector: FaceDetector | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> Any:
    """Fine-tunes `parent`'s field on super-resolved renders as a new "refine" node.

    workspace: an `edit3d.workspace.Workspace`; returns the finished node's record.
    """
    config = config or RefineConfig()
    parent = parent or workspace.head
    if parent is None:
        raise ValueError("parent: the workspace has no finished node to refine (train first)")
    record = workspace.start_node(
        "refine", parent, {**dataclasses.asdict(config), "profile": profile}
    )
    started = time.monotonic()
    try:
        field = workspace.load_field(parent)
        esrgan, gfpgan, detector = load_sr_networks(
            config, profile, workspace.device, esrgan=esrgan, gfpgan=gfpgan, detector=detector
        )
        targets, faces = make_targets(
            field,
            esrgan,
            config,
            gfpgan=gfpgan,
            detector=detector,
            progress=progress,
            cancel=cancel,
        )
        save_targets(workspace.node_dir(record.id) / TARGETS_DIR, targets)
        upscale_seconds = time.monotonic() - started
        checkpoint = workspace.root / record.paths["checkpoint"]
        every = int(getattr(field.config, "checkpoint_every", 0) or 0)

        def before_step(i: int) -> None:
            if every and i > 0 and i % every == 0:
                field.save_checkpoint(checkpoint)

        result = finetune_super_resolution(
            field, config, esrgan=esrgan, targets=targets, on_step=before_step,
            progress=progress, cancel=cancel,
        )  # fmt: skip
    except Cancelled:
        workspace.fail_node(record.id, "cancelled", "cancelled by the user")
        raise
    except (KeyboardInterrupt, SystemExit):
        workspace.fail_node(record.id, "interrupted", "interrupted")
        raise
    except Exception as error:
        workspace.fail_node(record.id, "failed", f"{type(error).__name__}: {error}")
        raise
    timings = {
        "upscale_s": upscale_seconds,
        "train_s": result.train_seconds,
        "faces": float(faces),
        "total_s": time.monotonic() - started,
    }
    return workspace.finish_node(record.id, field, timings)
