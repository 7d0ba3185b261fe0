"""The built-in job kinds: each is a short function calling edit3d's public API.

They run in the worker process. Heavy imports (torch, nerfstudio, diffusers) happen inside
the functions, so importing this module (the server does, to check kind names) is cheap.
Kinds are named after the protocol request that submits them.
"""

from __future__ import annotations

from pathlib import Path

from sidecar import workspaces
from sidecar.kinds import JobContext, job_kind


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
        return Workspace.open(root, device=ctx.device)
    meta = _session_meta(ctx)
    source = meta.get("source", {})
    preset = preset or meta.get("preset", "small")
    if dataset is not None:
        return Workspace.create(root, dataset=dataset, preset=preset, device=ctx.device)
    if source.get("kind") == "dataset":
        return Workspace.create(root, dataset=Path(source["path"]), preset=preset,
                                device=ctx.device)
    if source.get("kind") == "nerfstudio_run":
        return Workspace.create(root, nerfstudio_run=Path(source["path"]), preset=preset,
                                device=ctx.device)
    raise ValueError("this session has no dataset yet: upload one and pass dataset_path")


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
    workspace = _workspace(ctx)
    if count == 0 and workspace.head is not None:
        # Imported from an ns-train run: the views are the run's, read from its field.
        views = workspace.load_field().views
        workspaces.save_views(ctx.session_dir, views)  # type: ignore[arg-type]
        count = len(views)
    return {"views": count}


# ----- helpers shared by the kinds -------------------------------------------------------


def _camera_view(camera: object):
    """A protocol Camera record → edit3d CameraView (both world frame, OpenGL)."""
    from edit3d.scene.cameras import CameraView, Intrinsics

    intrinsics = Intrinsics(camera.fx, camera.fy, camera.cx, camera.cy,  # type: ignore[attr-defined]
                            camera.width, camera.height)  # type: ignore[attr-defined]
    return CameraView(camera.name or "camera", camera.c2w, intrinsics)  # type: ignore[attr-defined]


def _protocol_camera(view: object):
    from protocol.messages import Camera

    intr = view.intrinsics  # type: ignore[attr-defined]
    return Camera(c2w=view.c2w, fx=intr.fx, fy=intr.fy, cx=intr.cx,  # type: ignore[attr-defined]
                  cy=intr.cy, width=intr.width, height=intr.height,
                  name=view.name)  # type: ignore[attr-defined]


def _field(ctx: JobContext, workspace, turn_id: str | None):
    """The field of a turn, cached in the warm worker until the workspace changes."""
    key = ("field", str(ctx.workspace_dir), turn_id or workspace.head)
    cached = ctx.cache.get("field")
    if isinstance(cached, tuple) and cached[0] == key:
        return cached[1]
    field = workspace.load_field(turn_id)
    ctx.cache["field"] = (key, field)
    return field


def _forget_field(ctx: JobContext) -> None:
    ctx.cache.pop("field", None)


PREVIEW_LONG_SIDE = 256
"""Longest side of preview frames (live ones and the frame of a training job's result)."""
PREVIEW_EVERY = 50
"""Default iterations between live preview frames."""
PREVIEW_INTERVAL_S = 2.0
"""Default least seconds between live preview frames."""
PREVIEW_MAX_SHARE = 0.05
"""With the default interval, live previews take at most about this share of a job's time
(a slow render, e.g. on a CPU, spaces them further apart)."""


def _preview_size(view) -> tuple[int, int]:
    """(width, height) of a preview of `view`: its aspect, long side ≤ PREVIEW_LONG_SIDE."""
    intr = view.intrinsics
    scale = min(1.0, PREVIEW_LONG_SIDE / max(intr.width, intr.height))
    return max(1, round(intr.width * scale)), max(1, round(intr.height * scale))


def _result_preview(ctx: JobContext, workspace, turn_id: str) -> None:
    """Send a frame of the new node (its first dataset view), which also warms the field
    for the render requests that usually follow."""
    field = _field(ctx, workspace, turn_id)
    view = field.views[0]
    width, height = _preview_size(view)
    ctx.preview(field.render(view, width=width, height=height).rgb, view_name=view.name,
                step=workspace.turn(turn_id).steps)


class LivePreview:
    """A Workspace step hook that sends frames of the field being trained.

    A frame goes out after every `every`-th iteration, if at least the interval has passed
    since the last one. The default interval (None) is PREVIEW_INTERVAL_S, stretched so that
    rendering stays under PREVIEW_MAX_SHARE of the time; an explicit one is used as given.
    """

    def __init__(self, ctx: JobContext, every: int | None = None,
                 interval_s: float | None = None, camera: object | None = None) -> None:
        import time

        self.ctx = ctx
        self.every = PREVIEW_EVERY if every is None else int(every)
        self.adaptive = interval_s is None
        self.gap_s = PREVIEW_INTERVAL_S if interval_s is None else float(interval_s)
        self.view = None if camera is None else _camera_view(camera)
        self.render_s = 0.0
        """Seconds spent rendering frames so far."""
        self.sent: list[int] = []
        """Steps of the frames sent."""
        self._last = time.monotonic()

    @classmethod
    def from_params(cls, ctx: JobContext) -> LivePreview:
        p = ctx.params
        return cls(ctx, p.get("preview_every"), p.get("preview_interval_s"),
                   p.get("preview_camera"))

    def __call__(self, field, step: int) -> None:
        import time

        if self.every <= 0 or step % self.every != 0:
            return
        if time.monotonic() - self._last < self.gap_s:
            return
        view = self.view or field.views[0]
        width, height = _preview_size(view)
        started = time.monotonic()
        rgb = field.render(view, width=width, height=height).rgb
        spent = time.monotonic() - started
        self.ctx.preview(rgb, view_name=view.name, step=step)
        self.render_s += spent
        self.sent.append(step)
        self._last = time.monotonic()
        if self.adaptive:  # render time / (render time + gap) ≤ PREVIEW_MAX_SHARE
            share = PREVIEW_MAX_SHARE
            self.gap_s = max(PREVIEW_INTERVAL_S, spent * (1 - share) / share)


def _segmenter(ctx: JobContext):
    from edit3d.segmentation.adss import AdssSegmenter

    segmenter = ctx.cache.get("adss")
    if segmenter is None:
        segmenter = AdssSegmenter(ctx.profile, device=ctx.device)  # type: ignore[arg-type]
        ctx.cache["adss"] = segmenter
    return segmenter


# ----- the kinds ---------------------------------------------------------------------------


@job_kind("job.train_base", description="train the base NeRF (Sec. 4.1)")
def train_base(ctx: JobContext) -> dict:
    dataset = ctx.params.get("dataset_path")
    dataset_dir = _uploaded(ctx, dataset) if dataset else None
    if dataset_dir is not None and not (ctx.session_dir / workspaces.VIEWS_FILE).exists():
        _cache_views(ctx, dataset_dir)
    workspace = _workspace(ctx, dataset_dir, ctx.params.get("preset"))
    _forget_field(ctx)
    live = LivePreview.from_params(ctx)
    record = workspace.train_base(steps=ctx.params.get("steps"), progress=ctx.progress,
                                  cancel=ctx.cancel, on_step=live)
    _result_preview(ctx, workspace, record.id)
    return {"turn_id": record.id, "preview_frames": len(live.sent),
            "preview_s": round(live.render_s, 4)}


def _turn_spec(ctx: JobContext):
    from edit3d.editing.settings import EditorSettings
    from edit3d.editing.turns import TurnSpec

    p = ctx.params
    options = {"steps": p["steps"]} if p.get("steps") else {}
    if p.get("lr") is not None:
        options["lr"] = p["lr"]
    return TurnSpec(
        instruction=p["instruction"],
        edit_queries=tuple(p.get("edit_queries", ())),
        keep_queries=tuple(p.get("keep_queries", ())),
        caption=p.get("caption"),
        mode=p.get("mode", "edit3d"),
        edit_rate=p.get("edit_rate", 10),
        edit_count=p.get("edit_count", 1),
        seed=p.get("seed", 0),
        editor=p.get("editor", "ip2p"),
        editor_settings=EditorSettings.from_dict(_given_settings(p.get("editor_settings"))),
        **options,
    )


def _given_settings(settings: object) -> dict[str, object]:
    """The protocol's editor settings as the mapping of only the fields the client set."""
    return {} if settings is None else settings.given()  # type: ignore[attr-defined]


def _editor_spec(ctx: JobContext, spec: str) -> str:
    """The tiny profile swaps the real InstructPix2Pix for its pipeline-check model."""
    return "ip2p-tiny" if ctx.profile == "tiny" and spec == "ip2p" else spec


def _editor(ctx: JobContext, spec: str):
    """The editor for `spec`, kept loaded in the warm worker between turns."""
    from edit3d.editing.editors import load_editor

    key = ("editor", spec)
    cached = ctx.cache.get("editor")
    if isinstance(cached, tuple) and cached[0] == key:
        return cached[1]
    ctx.cache.pop("editor", None)  # one diffusion model in memory at a time
    editor = load_editor(spec, device=ctx.device)
    ctx.cache["editor"] = (key, editor)
    return editor


def _mask_provider(ctx: JobContext, spec):
    needs_masks = bool(spec.edit_queries or spec.keep_queries)
    return _segmenter(ctx).mask_provider() if needs_masks else None


@job_kind("job.run_turn", description="one editing turn (Sec. 3.1-3.2)")
def run_turn(ctx: JobContext) -> dict:
    import dataclasses

    workspace = _workspace(ctx)
    spec = _turn_spec(ctx)
    spec = dataclasses.replace(spec, editor=_editor_spec(ctx, spec.editor))
    _forget_field(ctx)
    record = workspace.run_turn(
        spec,
        parent=ctx.params.get("parent_turn"),
        editor=_editor(ctx, spec.editor),
        mask_provider=_mask_provider(ctx, spec),
        progress=ctx.progress,
        cancel=ctx.cancel,
        checkpoint_every=ctx.params.get("checkpoint_every"),
        on_step=LivePreview.from_params(ctx),
    )
    _result_preview(ctx, workspace, record.id)
    return {"turn_id": record.id, "tiny_profile": ctx.profile == "tiny"}


@job_kind("job.resume_turn",
          description="resume an interrupted turn or refine node from its checkpoint")
def resume_turn(ctx: JobContext) -> dict:
    workspace = _workspace(ctx)
    spec = workspace.turn(ctx.params["turn_id"]).turn_spec  # None for a refine node
    _forget_field(ctx)
    record = workspace.resume_turn(
        ctx.params["turn_id"],
        editor=_editor(ctx, spec.editor) if spec is not None else None,
        mask_provider=_mask_provider(ctx, spec) if spec is not None else None,
        progress=ctx.progress,
        cancel=ctx.cancel,
        on_step=LivePreview.from_params(ctx),
    )
    _result_preview(ctx, workspace, record.id)
    return {"turn_id": record.id}


@job_kind("job.discard_turn", description="discard an interrupted, failed or cancelled turn")
def discard_turn(ctx: JobContext) -> dict:
    workspace = _workspace(ctx)
    _forget_field(ctx)
    workspace.discard_turn(ctx.params["turn_id"])
    return {"turn_id": ctx.params["turn_id"], "discarded": True}


@job_kind("job.render", description="render a world-frame camera from a turn")
def render(ctx: JobContext) -> dict:
    from protocol.messages import RenderResult

    workspace = _workspace(ctx)
    field = _field(ctx, workspace, ctx.params.get("turn_id"))
    ctx.cancel.raise_if_cancelled()
    result = field.render(_camera_view(ctx.params["camera"]))
    outputs = set(ctx.params.get("outputs", ("rgb",)))
    event = RenderResult(
        job_id=ctx.job_id,
        turn_id=ctx.params.get("turn_id") or workspace.head,
        camera=ctx.params["camera"],
        rgb=result.rgb.astype("float32") if "rgb" in outputs else None,
        depth=result.depth.astype("float32") if "depth" in outputs else None,
        accumulation=result.accumulation.astype("float32") if "accumulation" in outputs
        else None,
    )
    return {"turn_id": event.turn_id, "event": event}


@job_kind("job.preview_masks", description="ADSS masks for one render (Sec. 3.2)")
def preview_masks(ctx: JobContext) -> dict:
    import numpy as np

    from protocol.messages import MasksResult

    workspace = _workspace(ctx)
    field = _field(ctx, workspace, ctx.params.get("turn_id"))
    camera = ctx.params.get("camera")
    view = _camera_view(camera) if camera is not None else field.view(ctx.params["view_name"])
    image = field.render(view).rgb
    ctx.cancel.raise_if_cancelled()
    edit, keep = tuple(ctx.params["edit_queries"]), tuple(ctx.params["keep_queries"])
    preview = _segmenter(ctx).preview(image, edit, keep, ctx.params.get("caption"))
    queries = (*edit, *keep)
    runner_up = [preview.matches[q].runner_up for q in queries]
    event = MasksResult(
        job_id=ctx.job_id,
        caption=preview.caption[:500],
        queries=queries,
        roles=tuple(["edit"] * len(edit) + ["keep"] * len(keep)),
        heatmaps=np.stack([preview.heatmaps[q] for q in queries]).astype(np.float32),
        masks=np.stack([preview.matches[q].mask for q in queries]).astype(bool),
        iou=np.array([preview.matches[q].iou for q in queries], dtype=np.float32),
        runner_up_iou=np.array([np.nan if r is None else r.iou for r in runner_up],
                               dtype=np.float32),
        soft_mask=preview.soft_mask.astype(np.float32),
    )
    ctx.preview(image, view_name=view.name)
    return {"caption": preview.caption, "tiny_profile": ctx.profile == "tiny", "event": event}


@job_kind("job.preview_edit", description="a turn's edit of one camera: before / mask / after")
def preview_edit(ctx: JobContext) -> dict:
    import dataclasses

    import numpy as np

    from edit3d.editing.view_edit import preview_edit as edit_preview
    from edit3d.progress import ProgressEvent
    from protocol.messages import EditPreviewResult

    workspace = _workspace(ctx)
    field = _field(ctx, workspace, ctx.params.get("turn_id"))
    camera = ctx.params.get("camera")
    view = _camera_view(camera) if camera is not None else field.view(ctx.params["view_name"])
    spec = _turn_spec(ctx)
    editor = _editor(ctx, _editor_spec(ctx, spec.editor))
    masks = _segmenter(ctx).mask_provider() if spec.edit_queries or spec.keep_queries else None
    seeds = tuple(range(spec.seed, spec.seed + ctx.params.get("seeds", 1)))
    edits = []
    for n, seed in enumerate(seeds):

        def on_step(done: int, total: int, n: int = n) -> None:
            ctx.progress(ProgressEvent("preview_edit", n * total + done, len(seeds) * total,
                                       message=f"seed {seeds[n]}"))  # fmt: skip

        edit = edit_preview(field, view, dataclasses.replace(spec, seed=seed), editor, masks,
                            cancel=ctx.cancel, on_step=on_step)  # fmt: skip
        edits.append(edit)
    first = edits[0]
    mask = np.ones(first.before.shape[:2], np.float32) if first.mask is None else first.mask
    event = EditPreviewResult(
        job_id=ctx.job_id, view_name=view.name, seeds=seeds, before=_uint8(first.before),
        mask=mask.astype(np.float32), after=np.stack([_uint8(e.after) for e in edits]),
    )  # fmt: skip
    return {"seeds": len(seeds), "tiny_profile": ctx.profile == "tiny", "event": event}


def _uint8(image):
    import numpy as np

    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


@job_kind("job.refine", description="super-resolution fine-tune (Sec. 3.3)")
def refine(ctx: JobContext) -> dict:
    from edit3d.refine import RefineConfig
    from edit3d.refine.node import run_refine

    workspace = _workspace(ctx)
    options = {"steps": ctx.params["steps"]} if ctx.params.get("steps") else {}
    config = RefineConfig(scale=ctx.params.get("scale", 4),
                          faces=ctx.params.get("faces", True), **options)
    _forget_field(ctx)
    live = LivePreview.from_params(ctx)
    record = run_refine(workspace, ctx.params.get("turn_id"), config,
                        profile=ctx.profile,  # type: ignore[arg-type]
                        on_step=live, progress=ctx.progress, cancel=ctx.cancel)
    _result_preview(ctx, workspace, record.id)
    return {"turn_id": record.id, "faces": int(record.timings.get("faces", 0)),
            "tiny_profile": ctx.profile == "tiny", "preview_frames": len(live.sent)}


def _crop(params: dict):
    from edit3d.export.sampling import CropBox

    if params.get("crop_min") is None:
        return None
    return CropBox(tuple(params["crop_min"]), tuple(params["crop_max"]))


@job_kind("job.export", description="point cloud or mesh in the world frame")
def export(ctx: JobContext) -> dict:
    import numpy as np

    from edit3d.export.files import write_geometry
    from protocol.messages import ExportResult

    workspace = _workspace(ctx)
    turn_id = ctx.params.get("turn_id") or workspace.head
    field = _field(ctx, workspace, turn_id)
    kind, fmt = ctx.params.get("kind", "point_cloud"), ctx.params.get("format", "ply")
    geometry = _export_geometry(ctx, field, kind)
    name = f"{kind}-{turn_id}-{ctx.job_id}.{fmt}"
    write_geometry(ctx.exports_dir / name, geometry, fmt)
    points = geometry.points if kind == "point_cloud" else geometry.vertices
    event = ExportResult(
        job_id=ctx.job_id, turn_id=turn_id, kind=kind, format=fmt, path=f"exports/{name}",
        points=points.astype(np.float32) if ctx.params.get("return_arrays", True) else None,
        colors=geometry.colors.astype(np.float32) if ctx.params.get("return_arrays", True)
        else None,
        normals=None if geometry.normals is None or not ctx.params.get("return_arrays", True)
        else geometry.normals.astype(np.float32),
        faces=geometry.faces.astype(np.int32) if kind == "mesh"
        and ctx.params.get("return_arrays", True) else None,
    )
    return {"turn_id": turn_id, "path": f"exports/{name}", "count": len(points),
            "event": event}


def _export_geometry(ctx: JobContext, field, kind: str):
    if kind == "mesh":
        from edit3d.export.mesh import export_mesh

        return export_mesh(field, crop=_crop(ctx.params), progress=ctx.progress,
                           cancel=ctx.cancel)
    from edit3d.export.pointcloud import PointCloudConfig, export_point_cloud

    config = PointCloudConfig(num_points=int(ctx.params.get("budget", 1_000_000)))
    return export_point_cloud(field, config, crop=_crop(ctx.params), progress=ctx.progress,
                              cancel=ctx.cancel)
