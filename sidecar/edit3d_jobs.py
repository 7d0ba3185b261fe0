"""The built-in job kinds: each is a short function calling edit3d's public API.

They run in the worker process. Heavy imports (torch, nerfstudio, diffusers) happen inside
the functions, so importing this module (the server does, to check kind names) is cheap.
Kinds are named after the protocol request that submits them, and each takes that request
record; where a kind calls a method configuration (TurnSpec, RefineConfig), one mapping
passes only the fields the request set, so the method's defaults and the preset decide the
rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edit3d.field.catalogue import DEFAULT_PRESET
from protocol import messages as m
from sidecar import cameras, workspaces
from sidecar.kinds import JobContext, job_kind

PREPARE_KIND = "session.prepare"
"""The kind the server queues itself when a session is created from a dataset path."""


@dataclass(frozen=True)
class PrepareSession:
    """Request of `session.prepare` (no protocol message: the server submits it). It has no
    fields: the job reads the dataset its session names."""


def _set_fields(request: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of a request that it set (None = not set)."""
    values = {name: getattr(request, name) for name in names}
    return {name: value for name, value in values.items() if value is not None}


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
    preset = preset or meta.get("preset", DEFAULT_PRESET)
    backend = meta.get("backend")  # None: edit3d's default
    if dataset is not None:
        return Workspace.create(root, dataset=dataset, preset=preset, backend=backend,
                                device=ctx.device)
    if source.get("kind") == "dataset":
        return Workspace.create(root, dataset=Path(source["path"]), preset=preset,
                                backend=backend, device=ctx.device)
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
    dataset = load_dataset(path)  # refuses image names that leave the dataset's folder
    check_images_inside_roots(ctx, dataset.image_paths.values())
    views = dataset.views
    workspaces.save_views(ctx.session_dir, views)  # type: ignore[arg-type]
    return len(views)


def check_images_inside_roots(ctx: JobContext, paths: Iterable[Path]) -> None:
    """Every image a dataset names must resolve inside a root the operator allows (checked
    here as well as by edit3d's loader, before any image is read for training)."""
    from sidecar.policy import resolve_source_path

    sessions_root = ctx.session_dir.parent  # type: ignore[union-attr]
    for path in paths:
        resolve_source_path(str(Path(path).absolute()), "a dataset image", ctx.data_roots,
                            sessions_root)


def _check_run_folders(ctx: JobContext) -> None:
    """An ns-train run names its dataset and checkpoint folders in its config.yml, a file
    from whoever made the run: both must lie under a root the operator allows, like the run."""
    from edit3d.field import nerfstudio_run_folders
    from sidecar.policy import resolve_source_path

    source = _session_meta(ctx).get("source", {})
    if source.get("kind") != "nerfstudio_run":
        return
    dataset, checkpoints = nerfstudio_run_folders(Path(source["path"]))
    sessions_root = ctx.session_dir.parent  # type: ignore[union-attr]
    for folder, what in ((dataset, "the run's dataset"), (checkpoints, "the run's checkpoints")):
        resolve_source_path(str(Path(folder).absolute()), what, ctx.data_roots, sessions_root)


@job_kind(PREPARE_KIND, PrepareSession,
          description="read the session's dataset and create its workspace")
def prepare_session(ctx: JobContext) -> dict:
    _check_run_folders(ctx)
    count = _cache_views(ctx, None)
    workspace = _workspace(ctx)
    if count == 0 and workspace.head is not None:
        # Imported from an ns-train run: the views are the run's, read from its field.
        views = workspace.load_field().views
        workspaces.save_views(ctx.session_dir, views)  # type: ignore[arg-type]
        count = len(views)
    return {"views": count}


# ----- helpers shared by the kinds -------------------------------------------------------


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
                 interval_s: float | None = None, camera: m.Camera | None = None) -> None:
        import time

        self.ctx = ctx
        self.every = PREVIEW_EVERY if every is None else int(every)
        self.adaptive = interval_s is None
        self.gap_s = PREVIEW_INTERVAL_S if interval_s is None else float(interval_s)
        self.view = None if camera is None else cameras.to_method(camera)
        self.render_s = 0.0
        """Seconds spent rendering frames so far."""
        self.sent: list[int] = []
        """Steps of the frames sent."""
        self._last = time.monotonic()

    @classmethod
    def of_request(cls, ctx: JobContext) -> LivePreview:
        """The live preview a training request asks for with its preview_* fields (a request
        without them, e.g. job.refine, gets the defaults)."""
        request = ctx.request
        return cls(ctx, getattr(request, "preview_every", None),
                   getattr(request, "preview_interval_s", None),
                   getattr(request, "preview_camera", None))

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


@job_kind("job.train_base", m.JobTrainBase, description="train the base NeRF (Sec. 4.1)")
def train_base(ctx: JobContext) -> dict:
    request: m.JobTrainBase = ctx.request
    dataset_dir = _uploaded(ctx, request.dataset_path) if request.dataset_path else None
    if dataset_dir is not None and not (ctx.session_dir / workspaces.VIEWS_FILE).exists():
        _cache_views(ctx, dataset_dir)
    workspace = _workspace(ctx, dataset_dir, request.preset)
    _forget_field(ctx)
    live = LivePreview.of_request(ctx)
    record = workspace.train_base(steps=request.steps, progress=ctx.progress,
                                  cancel=ctx.cancel, on_step=live)
    _result_preview(ctx, workspace, record.id)
    return {"turn_id": record.id, "preview_frames": len(live.sent),
            "preview_s": round(live.render_s, 4)}


TURN_SPEC_FIELDS = ("instruction", "edit_queries", "keep_queries", "caption", "mode", "steps",
                    "edit_rate", "edit_count", "update", "lr", "seed", "editor")
"""job.run_turn fields that are TurnSpec fields of the same name and meaning."""

PREVIEW_SPEC_FIELDS = ("instruction", "edit_queries", "keep_queries", "caption", "mode", "seed",
                       "editor")
"""The job.preview_edit fields among them (a preview trains nothing)."""


def turn_spec(request: m.JobRunTurn | m.JobPreviewEdit):
    """A turn request → TurnSpec: only the fields the request set (None = not set), so the
    spec's own defaults and the field preset (e.g. its turn_steps) decide the rest."""
    from edit3d.editing.settings import EditorSettings
    from edit3d.editing.turns import TurnSpec

    names = TURN_SPEC_FIELDS if isinstance(request, m.JobRunTurn) else PREVIEW_SPEC_FIELDS
    fields = _set_fields(request, names)
    if request.editor_settings is not None:
        fields["editor_settings"] = EditorSettings.from_dict(request.editor_settings.given())
    return TurnSpec(**fields)


REFINE_CONFIG_FIELDS = ("steps", "scale", "faces", "upscaler")
"""job.refine fields that are RefineConfig fields of the same name and meaning."""


def refine_config(request: m.JobRefine):
    """job.refine → RefineConfig: only the fields the request set."""
    from edit3d.refine import RefineConfig

    return RefineConfig(**_set_fields(request, REFINE_CONFIG_FIELDS))


def _editor_spec(ctx: JobContext, spec: str) -> str:
    """The tiny profile swaps the real InstructPix2Pix for its pipeline-check model."""
    return "ip2p-tiny" if ctx.profile == "tiny" and spec == "ip2p" else spec


def _editor(ctx: JobContext, spec: str):
    """The editor for `spec`, kept loaded in the warm worker between turns."""
    from edit3d.editing.editors import load_editor
    from sidecar.policy import check_editor

    # Checked here too: a resumed turn names its editor from the session's files.
    check_editor(spec, ctx.allowed_editors)
    key = ("editor", spec)
    cached = ctx.cache.get("editor")
    if isinstance(cached, tuple) and cached[0] == key:
        return cached[1]
    ctx.cache.pop("editor", None)  # one diffusion model in memory at a time
    editor = load_editor(spec, device=ctx.device)
    ctx.cache["editor"] = (key, editor)
    return editor


def _editor_pool(ctx: JobContext, spec: str):
    """The session's editor pool (session.create's `editors`), kept warm in the worker
    between turns like an editor; None when the session edits in the worker."""
    settings = _session_meta(ctx).get("editor_pool")
    if not settings:
        return None
    from edit3d.editing.ray_pool import open_editor_pool
    from sidecar.policy import check_editor

    check_editor(spec, ctx.allowed_editors)
    key = ("editor_pool", spec, settings["editors"], settings["staleness"])
    cached = ctx.cache.get("editor_pool")
    if isinstance(cached, tuple) and cached[0] == key:
        return cached[1]
    if isinstance(cached, tuple):
        cached[1].shutdown()
    ctx.cache.pop("editor", None)  # the pool's actors hold the diffusion model now
    pool = open_editor_pool(
        spec, editors=settings["editors"] or None, address=ctx.ray_address,
        staleness=settings["staleness"], device=ctx.device,
    )  # fmt: skip
    ctx.cache["editor_pool"] = (key, pool)
    return pool


def _turn_editor(ctx: JobContext, spec: str) -> dict:
    """`editor=` or `dispatcher=` for a turn of this session."""
    pool = _editor_pool(ctx, spec)
    return {"dispatcher": pool} if pool is not None else {"editor": _editor(ctx, spec)}


def _mask_provider(ctx: JobContext, spec):
    """ADSS masks, unless the turn's editor brings its own segmenter (only an editor the
    operator allowed with --allow-editor can: the stand-in editor's ground-truth masks); and
    what made them, as `TurnSpec.segmentation` records it."""
    if not (spec.edit_queries or spec.keep_queries):
        return None, ""
    adss = "adss" if ctx.profile == "real" else "adss-tiny"
    if ":" not in spec.editor:  # the registered editors bring no masks (none is loaded)
        return _segmenter(ctx).mask_provider(), adss
    own_masks = getattr(_editor(ctx, spec.editor), "mask_provider_for", None)
    if own_masks is not None:
        return own_masks(_dataset_root(ctx)), f"provider:{spec.editor}"
    return _segmenter(ctx).mask_provider(), adss


def _dataset_root(ctx: JobContext) -> Path:
    source = _session_meta(ctx).get("source", {})
    if source.get("kind") != "dataset":
        raise ValueError("this editor's masks need a session made from a dataset folder")
    return Path(source["path"])


@job_kind("job.run_turn", m.JobRunTurn, description="one editing turn (Sec. 3.1-3.2)")
def run_turn(ctx: JobContext) -> dict:
    import dataclasses

    request: m.JobRunTurn = ctx.request
    workspace = _workspace(ctx)
    spec = turn_spec(request)
    spec = dataclasses.replace(spec, editor=_editor_spec(ctx, spec.editor))
    mask_provider, segmentation = _mask_provider(ctx, spec)
    spec = dataclasses.replace(spec, segmentation=segmentation)
    _forget_field(ctx)
    record = workspace.run_turn(
        spec,
        parent=request.parent_turn,
        **_turn_editor(ctx, spec.editor),
        mask_provider=mask_provider,
        progress=ctx.progress,
        cancel=ctx.cancel,
        on_step=LivePreview.of_request(ctx),
    )
    _result_preview(ctx, workspace, record.id)
    return {"turn_id": record.id, "tiny_profile": ctx.profile == "tiny"}


@job_kind("job.resume_turn", m.JobResumeTurn,
          description="resume an interrupted turn or refine node from its checkpoint")
def resume_turn(ctx: JobContext) -> dict:
    request: m.JobResumeTurn = ctx.request
    workspace = _workspace(ctx)
    spec = workspace.turn(request.turn_id).turn_spec  # None for a refine node
    _forget_field(ctx)
    record = workspace.resume_turn(
        request.turn_id,
        **(_turn_editor(ctx, spec.editor) if spec is not None else {}),
        mask_provider=_mask_provider(ctx, spec)[0] if spec is not None else None,
        progress=ctx.progress,
        cancel=ctx.cancel,
        on_step=LivePreview.of_request(ctx),
    )
    _result_preview(ctx, workspace, record.id)
    return {"turn_id": record.id}


@job_kind("job.discard_turn", m.JobDiscardTurn,
          description="discard an interrupted, failed or cancelled turn")
def discard_turn(ctx: JobContext) -> dict:
    request: m.JobDiscardTurn = ctx.request
    workspace = _workspace(ctx)
    _forget_field(ctx)
    workspace.discard_turn(request.turn_id)
    return {"turn_id": request.turn_id, "discarded": True}


RENDER_STRIP_PIXELS = 1 << 20
"""A render is done in horizontal strips of about this many pixels, checking cancel between
them (an 8192² render is 64 strips)."""
_BYTES_PER_PIXEL = {
    "rgb": {"float32": 12, "float16": 6, "uint8": 3},
    "accumulation": {"float32": 4, "float16": 2, "uint8": 1},
    "depth": {"float32": 4, "float16": 2, "uint8": 2},
}
"""Bytes per pixel of each output in each requested dtype (depth is never 8-bit)."""


def render_budget_bytes() -> int:
    """Largest image one render may return: one buffer frame of the protocol."""
    from protocol import Limits

    return Limits().max_buffer_bytes


def check_render_request(request: m.JobRender) -> None:
    """Refuse, before queueing, a render whose images could not be sent."""
    camera, dtype = request.camera, request.dtype
    budget = render_budget_bytes()
    for output in request.outputs:
        size = camera.width * camera.height * _BYTES_PER_PIXEL[output][dtype]
        if size > budget:
            raise ValueError(
                f"render of {camera.width}x{camera.height} {output} as {dtype} is "
                f"{size / 2**20:.0f} MiB, over the render budget of {budget / 2**20:.0f} MiB "
                "per image: ask dtype='float16' or 'uint8', or a smaller size"
            )


def _render_in_strips(ctx: JobContext, field, view):
    """field.render(view), done strip by strip so a cancel stops it between strips."""
    import dataclasses

    import numpy as np

    from edit3d.scene.cameras import CameraView

    intr = view.intrinsics
    rows = max(1, RENDER_STRIP_PIXELS // intr.width)
    parts = []
    for top in range(0, intr.height, rows):
        ctx.cancel.raise_if_cancelled()
        height = min(rows, intr.height - top)
        strip = dataclasses.replace(intr, cy=intr.cy - top, height=height)
        parts.append(field.render(CameraView(view.name, view.c2w, strip)))
    if len(parts) == 1:
        return parts[0]
    return dataclasses.replace(parts[0], **{
        name: np.concatenate([getattr(part, name) for part in parts])
        for name in ("rgb", "depth", "accumulation")
    })


def _as_dtype(image, dtype: str, *, scaled: bool):
    import numpy as np

    if dtype == "uint8" and scaled:
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return image.astype(np.float32 if dtype == "float32" else np.float16)


@job_kind("job.render", m.JobRender, check=check_render_request, interactive=True,
          description="render a world-frame camera from a turn")
def render(ctx: JobContext) -> dict:
    request: m.JobRender = ctx.request
    workspace = _workspace(ctx)
    field = _field(ctx, workspace, request.turn_id)
    result = _render_in_strips(ctx, field, cameras.to_method(request.camera))
    outputs, dtype = set(request.outputs), request.dtype
    event = m.RenderResult(
        job_id=ctx.job_id,
        turn_id=request.turn_id or workspace.head,
        camera=request.camera,
        rgb=_as_dtype(result.rgb, dtype, scaled=True) if "rgb" in outputs else None,
        depth=_as_dtype(result.depth, dtype, scaled=False) if "depth" in outputs else None,
        accumulation=_as_dtype(result.accumulation, dtype, scaled=True)
        if "accumulation" in outputs else None,
    )
    return {"turn_id": event.turn_id, "event": event}


@job_kind("job.preview_masks", m.JobPreviewMasks, interactive=True,
          description="ADSS masks for one render (Sec. 3.2)")
def preview_masks(ctx: JobContext) -> dict:
    import numpy as np

    request: m.JobPreviewMasks = ctx.request
    workspace = _workspace(ctx)
    field = _field(ctx, workspace, request.turn_id)
    view = (cameras.to_method(request.camera) if request.camera is not None
            else field.view(request.view_name))
    image = field.render(view).rgb
    ctx.cancel.raise_if_cancelled()
    edit, keep = request.edit_queries, request.keep_queries
    preview = _segmenter(ctx).preview(image, edit, keep, request.caption)
    queries = (*edit, *keep)
    runner_up = [preview.matches[q].runner_up for q in queries]
    event = m.MasksResult(
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


@job_kind("job.preview_edit", m.JobPreviewEdit, interactive=True,
          description="a turn's edit of one camera: before / mask / after")
def preview_edit(ctx: JobContext) -> dict:
    import dataclasses

    import numpy as np

    from edit3d.editing.view_edit import preview_edit as edit_preview
    from edit3d.progress import ProgressEvent

    request: m.JobPreviewEdit = ctx.request
    workspace = _workspace(ctx)
    field = _field(ctx, workspace, request.turn_id)
    view = (cameras.to_method(request.camera) if request.camera is not None
            else field.view(request.view_name))
    spec = turn_spec(request)
    editor = _editor(ctx, _editor_spec(ctx, spec.editor))
    masks = _segmenter(ctx).mask_provider() if spec.edit_queries or spec.keep_queries else None
    seeds = tuple(range(spec.seed, spec.seed + request.seeds))
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
    event = m.EditPreviewResult(
        job_id=ctx.job_id, view_name=view.name, seeds=seeds, before=_uint8(first.before),
        mask=mask.astype(np.float32), after=np.stack([_uint8(e.after) for e in edits]),
    )  # fmt: skip
    return {"seeds": len(seeds), "tiny_profile": ctx.profile == "tiny", "event": event}


def _uint8(image):
    import numpy as np

    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


@job_kind("job.refine", m.JobRefine, description="super-resolution fine-tune (Sec. 3.3)")
def refine(ctx: JobContext) -> dict:
    from edit3d.refine.node import run_refine

    request: m.JobRefine = ctx.request
    workspace = _workspace(ctx)
    _forget_field(ctx)
    live = LivePreview.of_request(ctx)
    record = run_refine(workspace, request.turn_id, refine_config(request),
                        profile=ctx.profile,  # type: ignore[arg-type]
                        on_step=live, progress=ctx.progress, cancel=ctx.cancel)
    _result_preview(ctx, workspace, record.id)
    return {"turn_id": record.id, "faces": int(record.timings.get("faces", 0)),
            "tiny_profile": ctx.profile == "tiny", "preview_frames": len(live.sent)}


def point_cloud_config(request: m.JobExport):
    """job.export → PointCloudConfig: the point budget and view count only when set."""
    from edit3d.export.pointcloud import PointCloudConfig

    given = {"num_points": request.budget, "max_views": request.max_views}
    return PointCloudConfig(**{name: value for name, value in given.items() if value is not None})


def mesh_config(request: m.JobExport):
    """job.export → MeshConfig: the view count only when set."""
    from edit3d.export.mesh import MeshConfig

    return MeshConfig(**({} if request.max_views is None else {"max_views": request.max_views}))


def _crop(request: m.JobExport):
    from edit3d.export.sampling import CropBox

    if request.crop_min is None or request.crop_max is None:
        return None
    return CropBox(request.crop_min, request.crop_max)


@job_kind("job.export", m.JobExport,
          description="point cloud, mesh or Gaussian splats in the world frame, or a "
                      "nerfstudio run")
def export(ctx: JobContext) -> dict:
    request: m.JobExport = ctx.request
    workspace = _workspace(ctx)
    turn_id = request.turn_id or workspace.head
    field = _field(ctx, workspace, turn_id)
    if request.kind == "nerfstudio_run":
        return _export_nerfstudio_run(ctx, field, turn_id)
    kind, fmt = request.kind, request.format
    geometry = _export_geometry(ctx, field, request)
    name = f"{kind}-{turn_id}-{ctx.job_id}.{fmt}"
    write_export(ctx.exports_dir / name, geometry, fmt)
    arrays = _result_arrays(kind, geometry) if request.return_arrays else {}
    event = m.ExportResult(job_id=ctx.job_id, turn_id=turn_id, kind=kind, format=fmt,
                           path=f"exports/{name}", **arrays)
    count = len(geometry.means if kind == "splats" else
                geometry.points if kind == "point_cloud" else geometry.vertices)
    return {"turn_id": turn_id, "path": f"exports/{name}", "count": count, "event": event}


def _result_arrays(kind: str, geometry) -> dict:
    """The export.result arrays of a point cloud, mesh or splats."""
    import numpy as np

    if kind == "splats":
        return {"points": geometry.means, "sh_dc": geometry.sh_dc,
                "opacity_logits": geometry.opacities_logit, "log_scales": geometry.scales_log,
                "rotations": geometry.quats_wxyz}
    points = geometry.points if kind == "point_cloud" else geometry.vertices
    return {
        "points": points.astype(np.float32),
        "colors": geometry.colors.astype(np.float32),
        "normals": None if geometry.normals is None else geometry.normals.astype(np.float32),
        "faces": geometry.faces.astype(np.int32) if kind == "mesh" else None,
    }


def _export_nerfstudio_run(ctx: JobContext, field, turn_id: str) -> dict:
    """The turn as an ns-train output folder under exports/ (whole, or not at all)."""
    import shutil

    from edit3d.field import write_nerfstudio_run

    folder = ctx.exports_dir / f"nerfstudio_run-{turn_id}-{ctx.job_id}"
    try:
        config_yml = write_nerfstudio_run(field, folder, timestamp=turn_id)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    path = config_yml.relative_to(ctx.exports_dir.parent).as_posix()
    event = m.ExportResult(job_id=ctx.job_id, turn_id=turn_id, kind="nerfstudio_run",
                           format="yml", path=path)
    return {"turn_id": turn_id, "path": path, "step": field.step, "event": event}


def write_export(path: Path, geometry, fmt: str) -> None:
    """Write an export file whole, or not at all (a failed write, e.g. on a full disk,
    leaves no truncated file behind)."""
    from edit3d.export.files import write_geometry

    try:
        write_geometry(path, geometry, fmt)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _export_geometry(ctx: JobContext, field, request: m.JobExport):
    if request.kind == "splats":
        from edit3d.export.splats import world_gaussians

        return world_gaussians(field)  # a NeRF fails the job: "... has no Gaussians; ..."
    if request.kind == "mesh":
        from edit3d.export.mesh import export_mesh

        return export_mesh(field, mesh_config(request), crop=_crop(request),
                           progress=ctx.progress, cancel=ctx.cancel)
    from edit3d.export.pointcloud import export_point_cloud

    return export_point_cloud(field, point_cloud_config(request), crop=_crop(request),
                              progress=ctx.progress, cancel=ctx.cancel)
