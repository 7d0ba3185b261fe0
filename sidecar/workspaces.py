"""The sidecar's only window onto edit3d's Workspace: summaries, recovery, checkout.

Everything here reads or changes a session's `workspace/` through `edit3d.workspace`'s
public API, imported lazily so the server starts without torch. The views of a session
(names, poses, intrinsics in the world frame) are cached by the worker in `views.npz` next
to the workspace, because reading a dataset runs nerfstudio's dataparser.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidecar.fsutil import atomic_write_bytes

VIEWS_FILE = "views.npz"


@dataclass(frozen=True)
class TurnSummary:
    """One turn as the sidecar reports it."""

    turn_id: str
    parent: str | None
    kind: str
    status: str
    instruction: str | None
    created_ts: float
    finished_ts: float | None
    step: int
    total_steps: int
    edit_queries: tuple[str, ...]
    keep_queries: tuple[str, ...]
    params: dict


@dataclass(frozen=True)
class WorkspaceSummary:
    """Head and turn history of a session's workspace."""

    head: str | None
    turns: list[TurnSummary]
    backend: str | None = None
    """The field backend of every node (None before the workspace exists)."""


def workspace_exists(root: Path) -> bool:
    return (Path(root) / "workspace.json").is_file()


def summarize(root: Path) -> WorkspaceSummary:
    """Head and turns of the workspace at `root` (empty before it exists)."""
    if not workspace_exists(root):
        return WorkspaceSummary(None, [])
    from edit3d.workspace import Workspace

    workspace = Workspace.open(root)
    turns = [_turn_summary(root, record) for record in workspace.turns]
    return WorkspaceSummary(workspace.head, turns, workspace.backend)


def _scalar_params(spec: dict) -> dict:
    """The spec's scalar values (str, int, float, bool, None), a nested map's (the editor
    settings) under their own names; lists are left out."""
    items = []
    for key, value in (spec or {}).items():
        items.extend(value.items() if isinstance(value, dict) else [(key, value)])
    return {
        str(key): value
        for key, value in items
        if value is None or isinstance(value, (str, int, float, bool))
    }


def _queries(spec: dict, key: str) -> tuple[str, ...]:
    return tuple(str(q) for q in spec.get(key) or ())


def _steps_done(root: Path, record) -> int:
    """Iterations a node has done: its final count once finished, else its last checkpoint's
    (an interrupted turn resumes from there)."""
    if record.status == "finished" or record.kind not in ("edit", "base"):
        return int(record.steps or 0)
    if record.kind == "base":
        checkpoint = Path(root) / record.paths["checkpoint"]
        return max(int(record.steps or 0), _checkpoint_step(checkpoint))
    from edit3d.editing.turns import STATE_NAME

    try:
        state = json.loads((Path(root) / record.paths["dir"] / STATE_NAME).read_text())
        return max(int(record.steps or 0), int(state.get("next_step", 0)))
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return int(record.steps or 0)  # no checkpoint yet


def _checkpoint_step(path: Path) -> int:
    """The iteration a field checkpoint was saved at (0 when there is none). Memory-mapped:
    only the small record is read, not the weights."""
    if not path.is_file():
        return 0
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state.get("step", 0))
    except Exception:  # a checkpoint being replaced or damaged: no step to report
        return 0


def _turn_summary(root: Path, record) -> TurnSummary:  # an edit3d.workspace.TurnRecord
    spec = dict(record.spec or {})
    return TurnSummary(
        turn_id=str(record.id),
        parent=record.parent,
        kind=str(record.kind),
        status=str(record.status),
        instruction=spec.get("instruction"),
        created_ts=float(record.created or 0.0),
        finished_ts=None if record.finished is None else float(record.finished),
        step=_steps_done(root, record),
        total_steps=int(spec.get("steps") or 0),
        edit_queries=_queries(spec, "edit_queries"),
        keep_queries=_queries(spec, "keep_queries"),
        params=_scalar_params(spec),
    )


def recover(root: Path) -> list[str]:
    """After an unclean stop: turns left "running" become "interrupted"; returns their ids.

    Called by a sidecar holding the work directory's lock before it runs any job, so no
    turn of its sessions can really be running: a "running" node whose recorded owner pid
    happens to be alive again (pid reuse) is marked interrupted too.
    """
    return release_running(root, "the sidecar stopped while it ran")


def release_running(root: Path, message: str) -> list[str]:
    """Mark every node still "running" in the workspace at `root` interrupted; their ids.

    Only valid when no job of the session runs: at start-up, or once the job that wrote the
    node has ended (failed, was killed with its worker, ran out of disk). Interrupted nodes
    can be resumed from their last checkpoint or discarded, and a new base training starts.
    """
    if not workspace_exists(root):
        return []
    from edit3d.workspace import Workspace

    workspace = Workspace.open(root)
    interrupted = list(workspace.recover())
    for record in workspace.turns:
        if record.status == "running":
            workspace.fail_node(record.id, "interrupted", message)
            interrupted.append(record.id)
    return interrupted


def checkout(root: Path, turn_id: str) -> None:
    """Make a finished turn the head (raises ValueError for an unknown or unfinished one)."""
    from edit3d.workspace import Workspace

    Workspace.open(root).checkout(turn_id)


# ----- views cache (written by jobs in the worker, read by the server) -------------------


def save_views(session_dir: Path, views: list) -> None:
    """Cache `edit3d.scene.cameras.CameraView`s of a session for `session.open`."""
    names = np.array([view.name for view in views], dtype=object)
    c2w = np.stack([view.c2w for view in views]) if views else np.zeros((0, 4, 4))
    intrinsics = np.array(
        [[v.intrinsics.fx, v.intrinsics.fy, v.intrinsics.cx, v.intrinsics.cy,
          v.intrinsics.width, v.intrinsics.height] for v in views],
        dtype=np.float64,
    ).reshape(-1, 6)
    buffer = io.BytesIO()
    np.savez(buffer, names=np.array([str(n) for n in names]), c2w=c2w, intrinsics=intrinsics)
    atomic_write_bytes(Path(session_dir) / VIEWS_FILE, buffer.getvalue())


def load_views(session_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, c2w [N,4,4], intrinsics [N,6]) or empty arrays when not cached yet."""
    path = Path(session_dir) / VIEWS_FILE
    if not path.is_file():
        return [], np.zeros((0, 4, 4)), np.zeros((0, 6))
    with np.load(path, allow_pickle=False) as data:
        return (
            [str(n) for n in data["names"]],
            np.asarray(data["c2w"], dtype=np.float64),
            np.asarray(data["intrinsics"], dtype=np.float64),
        )
