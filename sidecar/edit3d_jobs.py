"""The built-in job kinds: each is a short function calling edit3d's public API.

They run in the worker process. Heavy imports (torch, nerfstudio, diffusers) happen inside
the functions, so importing this module (the server does, to check kind names) is cheap.
Kinds are named after the protocol request that submits them.
"""

from __future__ import annotations

from pathlib import Path

from sidecar import workspaces
from sidecar.kinds import JobContext, job_kind
from sidecar.sessions import check_session_id  # noqa: F401  (re-exported for job modules)


def _session_meta(ctx: JobContext) -> dict:
    import json

    assert ctx.session_dir is not None
    return json.loads((ctx.session_dir / "session.json").read_text(encoding="utf-8"))


def _uploaded(ctx: JobContext, relative: str) -> Path:
    from sidecar.fsutil import safe_relative_path

    assert ctx.session_dir is not None
    path = ctx.session_dir / "uploads" / Path(*safe_relative_path(relative).parts)
    if not path.exists():
        raise ValueError(f"dataset_path {relative!r} was not uploaded to this session")
    return path


def _workspace(ctx: JobContext, dataset: Path | None = None, preset: str | None = None):
    """Open the session's Workspace, creating it from its source on first use."""
    from edit3d.workspace import Workspace

    root = ctx.workspace_dir
    if workspaces.workspace_exists(root):
        return Workspace.open(root)
    meta = _session_meta(ctx)
    source = meta.get("source", {})
    preset = preset or meta.get("preset", "small")
    if dataset is not None:
        workspace = Workspace.create(root, dataset=dataset, preset=preset)
    elif source.get("kind") == "dataset":
        workspace = Workspace.create(root, dataset=Path(source["path"]), preset=preset)
    elif source.get("kind") == "nerfstudio_run":
        workspace = Workspace.create(root, nerfstudio_run=Path(source["path"]), preset=preset)
    else:
        raise ValueError("this session has no dataset yet: upload one and pass dataset_path")
    return workspace


def _cache_views(ctx: JobContext, dataset: Path | None) -> int:
    from edit3d.scene.dataset import load_dataset

    meta = _session_meta(ctx)
    source = meta.get("source", {})
    path = dataset or (Path(source["path"]) if source.get("kind") == "dataset" else None)
    if path is None:
        return 0
    views = load_dataset(path).views
    workspaces.save_views(ctx.session_dir, views)  # type: ignore[arg-type]
    return len(views)


@job_kind("session.prepare", description="read the session's dataset and create its workspace")
def prepare_session(ctx: JobContext) -> dict:
    count = _cache_views(ctx, None)
    _workspace(ctx)
    return {"views": count}
