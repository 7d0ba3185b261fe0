"""The main job: a scripted multi-turn Edit3D session through a real sidecar.

Generates the sample scene, starts `edit3d-sidecar`, and drives it through the protocol
client exactly as the Blender add-on does: create a session, train the base, preview ADSS
masks, run two turns (the second an additive edit with a keep query), render previews after
each turn, export a point cloud, and write `report.md`.

Real model weights are used when every network is cached (or can be fetched). Without them
the stand-in profile runs: a deterministic recolour editor with ground-truth part masks in
place of InstructPix2Pix and ADSS (`edit3d.editing.standin`, allowed on the sidecar's
command line), and the super-resolution fine-tune on targets made by a classical Lanczos +
unsharp-mask upscaler in place of Real-ESRGAN (`edit3d.refine.classical`); every output says
so. `--profile tiny` runs the tiny random networks instead (a pipeline check, not an edit).

The contact sheet has one row per stage (base, each turn, the fine-tune) and one column per
preview view; rows rendered at the training size are shown enlarged by the classical
upscaler to the fine-tuned field's render size (at least MIN_TILE_PX), and each row says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edit3d.editing.standin import STAND_IN_LABEL
from edit3d.models import registry
from edit3d.refine.classical import CLASSICAL_UPSCALER_LABEL, LanczosUpscaler
from edit3d.scene.sample import SampleScene, make_sample_scene
from protocol import (
    Camera,
    Client,
    JobAccepted,
    JobCancelled,
    JobExport,
    JobFailed,
    JobFinished,
    JobPreviewMasks,
    JobProgress,
    JobRefine,
    JobRender,
    JobRunTurn,
    JobTrainBase,
    MasksResult,
    Message,
    RenderResult,
    SessionCreate,
    SessionOpen,
    SessionSummary,
)

REAL_MODELS = (
    "instruct-pix2pix",
    "blip-caption-large",
    "blip-itm-large-coco",
    "sam-vit-h",
    "realesrgan-x4plus",
    "gfpgan-v1.4",
    "yunet-face",
    "clip-vit-l14",
)
PIPELINE_CHECK = "PIPELINE CHECK (tiny random models) - not an edit"
STAND_IN_EDITOR = "edit3d.editing.standin:RecolourEditor"
"""Import path of the stand-in editor; the demo's sidecar allows it with --allow-editor."""
MIN_TILE_PX = 256
"""Contact-sheet tiles are at least this many pixels on their short side."""
REFINE_SCALE = 4
"""Fine-tune targets are the training renders upscaled by this factor (Real-ESRGAN x4plus's)."""
REFINE_PREVIEW_SCALE = 2
"""The fine-tuned field's preview renders have this many times the dataset's pixels per side:
twice the other rows' detail, at a quarter of the cost of x4 (three x4 renders took 19 s of
the main job's 3 minutes on a 2-core CPU)."""
EXPORT_VIEWS = 8
"""Dataset views the exported point cloud is rendered from (of 24 around the orbit: each
part of the person is seen, at a third of the time of every view)."""
PREVIEW_VIEWS = 3
"""Columns of the contact sheet: views spread around the orbit that show the person."""
MASK_MARGIN_PX = 2
"""Locality is measured outside the masks grown by this much (soft mask edges blend)."""


@dataclass(frozen=True)
class TurnPlan:
    instruction: str
    edit_queries: tuple[str, ...] = ()
    keep_queries: tuple[str, ...] = ()
    caption: str | None = None


TURNS = (
    TurnPlan("turn his shirt red", edit_queries=("shirt",),
             caption="a man in a shirt"),
    TurnPlan("give him a cowboy hat", keep_queries=("shirt", "trousers"),
             caption="a man in a red shirt"),
)
STAND_IN_TURNS = (
    TurnPlan("make his shirt red", edit_queries=("shirt",)),
    TurnPlan("make his trousers blue", edit_queries=("trousers",), keep_queries=("shirt",)),
)
"""Turns the recolour stand-in can do: each names a colour and a sample-scene part."""


@dataclass
class Report:
    profile: str
    lines: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    sheet: np.ndarray | None = None
    """The contact sheet, uint8 [H, W, 3]."""
    figures: TurnFigures | None = None
    """Measured retention and locality (stand-in profile: its masks are the ground truth)."""

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the block's seconds to `phase` (a phase may run several times)."""
        started = time.monotonic()
        yield
        self.timings[phase] = self.timings.get(phase, 0.0) + time.monotonic() - started

    def folder(self, out: Path, kind: str) -> Path:
        """Where outputs of `kind` go; tiny and stand-in outputs say so in their folder name."""
        suffix = {"tiny": "-pipeline-check", "standin": "-stand-in"}.get(self.profile, "")
        return out / f"{kind}{suffix}"

    @property
    def turns(self) -> tuple[TurnPlan, ...]:
        return STAND_IN_TURNS if self.profile == "standin" else TURNS

    def add(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)


def choose_profile(requested: str, report_lines: list[str]) -> str:
    """`real` only when every network is on disk or fetchable now; say plainly why not."""
    if requested in ("tiny", "standin"):
        if requested == "standin":
            report_lines.append(f"Stand-in profile requested: {STAND_IN_LABEL}.")
        return requested
    missing = [name for name in REAL_MODELS if not _available(name)]
    if not missing:
        return "real"
    if _hub_reachable():
        for name in missing:
            print(f"[demo] fetching {name} ...", flush=True)
            registry.fetch(name)
        return "real"
    report_lines.append(
        "Real model weights are not on this machine and cannot be downloaded from here "
        f"(missing: {', '.join(missing)}). Running the STAND-IN profile instead: "
        f"{STAND_IN_LABEL}. The recolour editor and the ground-truth masks replace "
        "InstructPix2Pix and ADSS; fusion, multi-turn conditioning and field training are "
        "Edit3D's own. The super-resolution fine-tune trains on targets made by the "
        f"{CLASSICAL_UPSCALER_LABEL}, without face restoration. Fetch the weights with "
        "`edit3d models fetch --all` (or set EDIT3D_MODELS_DIR) and run again for real edits."
    )
    if requested == "real":
        raise SystemExit(report_lines[-1])
    return "standin"


def _available(name: str) -> bool:
    try:
        registry.resolve_path(name)
    except registry.ModelNotAvailable:
        return False
    return True


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextmanager
def running_sidecar(workdir: Path, profile: str, data_root: Path) -> Iterator[Path]:
    """Start `edit3d-sidecar` (serving datasets under `data_root`) and yield its connection
    file; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "sidecar.cli", "--workdir", str(workdir),
               "--bind", "tcp://127.0.0.1:0", "--data-root", str(data_root)]
    if profile == "standin":
        # no network is loaded on this profile; the stand-in is the operator's choice
        command += ["--profile", "tiny", "--allow-editor", STAND_IN_EDITOR]
    else:
        command += ["--profile", profile]
    log = (workdir / "sidecar.log").open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        yield _await_connection_file(process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _await_connection_file(process: subprocess.Popen[str]) -> Path:
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            raise SystemExit(f"edit3d-sidecar exited with {process.returncode}; see sidecar.log")
        if line.startswith("connection_file:"):
            return Path(line.split(":", 1)[1].strip())
    raise SystemExit("edit3d-sidecar did not report its connection file within 120 s")


class Session:
    """Runs jobs of one sidecar session and waits for their outcome, printing progress."""

    def __init__(self, client: Client, session_id: str) -> None:
        self.client = client
        self.session_id = session_id

    def run(self, request: Message, label: str) -> list[Message]:
        accepted = self.client.request(request, timeout_s=30, session=self.session_id)
        assert isinstance(accepted, JobAccepted), accepted
        results: list[Message] = []
        last_print = 0.0
        while True:
            for envelope in self.client.poll(timeout_ms=200):
                message = envelope.message
                if getattr(message, "job_id", None) != accepted.job_id:
                    continue
                if isinstance(message, JobProgress) and time.monotonic() - last_print > 2:
                    last_print = time.monotonic()
                    eta = f", ETA {message.eta_s:.0f} s" if message.eta_s is not None else ""
                    print(f"  {label}: {message.step}/{message.total}{eta} {message.message}",
                          flush=True)
                elif isinstance(message, JobFinished):
                    return [*results, message]
                elif isinstance(message, JobFailed):
                    raise SystemExit(f"{label} failed: {message.reason}\n{message.traceback}")
                elif isinstance(message, JobCancelled):
                    raise SystemExit(f"{label} was cancelled")
                else:
                    results.append(message)

    def summary(self) -> SessionSummary:
        reply = self.client.request(SessionOpen(session_id=self.session_id), timeout_s=30)
        assert isinstance(reply, SessionSummary)
        return reply


def preview_views(scene: SampleScene, count: int = PREVIEW_VIEWS) -> list[str]:
    """`count` view names spread around the orbit: of each arc, the view that shows the most
    of the person (the parts the turns edit)."""
    names = [view.name for view in scene.views]
    arcs = np.array_split(np.arange(len(names)), count)
    return [names[max(arc, key=lambda i: int(scene.object_mask("person", names[i]).sum()))]
            for arc in arcs]


def cameras_of(summary: SessionSummary, names: list[str]) -> list[Camera]:
    """The session's cameras of the dataset views `names`, in that order."""
    cameras = []
    for name in names:
        index = summary.view_names.index(name)
        fx, fy, cx, cy, width, height = summary.view_intrinsics[index]
        cameras.append(Camera(c2w=np.ascontiguousarray(summary.view_c2w[index]), fx=fx, fy=fy,
                              cx=cx, cy=cy, width=int(width), height=int(height), name=name))
    return cameras


def enlarged(camera: Camera, factor: int) -> Camera:
    """The same camera with `factor` times the pixels on each side (same field of view)."""
    return dataclasses.replace(camera, fx=camera.fx * factor, fy=camera.fy * factor,
                               cx=camera.cx * factor, cy=camera.cy * factor,
                               width=camera.width * factor, height=camera.height * factor)


def save_image(array: np.ndarray, path: Path) -> None:
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)


def render_previews(session: Session, cameras: list[Camera], folder: Path,
                    stage: str) -> list[Path]:
    paths = []
    for camera in cameras:
        messages = session.run(JobRender(session_id=session.session_id, camera=camera),
                               f"render {camera.name}")
        render = next(m for m in messages if isinstance(m, RenderResult))
        assert render.rgb is not None
        path = folder / f"{stage}-{Path(camera.name or 'view').stem}.png"
        save_image(render.rgb, path)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class SheetRow:
    """One stage on the contact sheet: its renders and what the row says about them."""

    label: str
    images: list[np.ndarray]
    """uint8 [H, W, 3] renders, one per preview view."""


LABEL_STRIP_PX = 16
"""Height of the text strip above each row (and of the title)."""


def contact_sheet(rows: list[SheetRow], path: Path, title: str = "") -> np.ndarray:
    """One image: a labelled row of views per stage, so a reader sees the stages side by side.

    Every tile is brought to the size of the largest render (at least MIN_TILE_PX): smaller
    renders are enlarged by the classical upscaler, and their row's label says so. Returns
    the sheet (uint8 [H, W, 3]) and writes it to `path`.
    """
    side = max(MIN_TILE_PX, *(image.shape[0] for row in rows for image in row.images))
    strips = [_text_strip(title, side * len(rows[0].images))] if title else []
    for row in rows:
        tiles = [_tile(image, side) for image in row.images]
        rendered = sorted({image.shape[0] for image in row.images})
        note = f" (rendered at {', '.join(map(str, rendered))} px"
        note += ", shown enlarged by the classical upscaler)" if rendered != [side] else ")"
        strips.append(_text_strip(row.label + note, side * len(tiles)))
        strips.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(strips, axis=0)
    save_image(sheet, path)
    return sheet


def _tile(image: np.ndarray, side: int) -> np.ndarray:
    """uint8 `image` as a `side` px tile (square renders): classical upscale, then an exact
    area resize where the whole factor overshoots."""
    if image.shape[0] == side:
        return image
    factor = max(1, -(-side // image.shape[0]))
    big = LanczosUpscaler(scale=factor).upscale(np.asarray(image, np.float32) / 255.0)
    pixels = (big * 255.0 + 0.5).astype(np.uint8)
    if pixels.shape[0] != side:
        pixels = np.asarray(Image.fromarray(pixels).resize((side, side), Image.BOX))
    return pixels


def _text_strip(text: str, width: int) -> np.ndarray:
    strip = Image.new("RGB", (width, LABEL_STRIP_PX), (255, 255, 255))
    ImageDraw.Draw(strip).text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(strip)


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """PSNR in dB of images in [0, 255] or [0, 1] (same scale) over the bool [H, W] `region`;
    inf when identical there. ValueError if the region is empty."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        raise ValueError("region is empty: nothing to compare")
    peak = 255.0 if max(np.max(a), np.max(b)) > 1.0 else 1.0
    diff = np.asarray(a, dtype=np.float64)[region] - np.asarray(b, dtype=np.float64)[region]
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(peak**2 / mse)


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """bool [H, W] `mask` dilated by `pixels` (square neighbourhood)."""
    grown = np.asarray(mask, dtype=bool).copy()
    for _ in range(pixels):
        padded = np.pad(grown, 1)
        grown = np.max([padded[dy:dy + grown.shape[0], dx:dx + grown.shape[1]]
                        for dy in range(3) for dx in range(3)], axis=0)
    return grown


@dataclass(frozen=True)
class TurnFigures:
    """Retention and locality of a two-turn run, averaged over views (PSNR, dB)."""

    turn1_change: float
    """Turn-1 region after turn 1 vs the base: low means turn 1 changed it."""
    turn2_change: float
    """Turn-2 region after turn 2 vs after turn 1: low means turn 2 changed it."""
    retention: float
    """Turn-1 region after turn 2 vs after turn 1: high means turn 1's edit was kept."""
    locality: float
    """Outside both masks (grown by MASK_MARGIN_PX) after turn 2 vs the base."""


def turn_figures(base: list[np.ndarray], turn1: list[np.ndarray], turn2: list[np.ndarray],
                 region1: list[np.ndarray], region2: list[np.ndarray]) -> TurnFigures:
    """The report's measurements, one value per view averaged; regions are bool [H, W]."""
    views = range(len(base))
    outside = [~grow(region1[i] | region2[i], MASK_MARGIN_PX) for i in views]
    return TurnFigures(
        turn1_change=float(np.mean([psnr(turn1[i], base[i], region1[i]) for i in views])),
        turn2_change=float(np.mean([psnr(turn2[i], turn1[i], region2[i]) for i in views])),
        retention=float(np.mean([psnr(turn2[i], turn1[i], region1[i]) for i in views])),
        locality=float(np.mean([psnr(turn2[i], base[i], outside[i]) for i in views])),
    )


def run_demo(out: Path, args: argparse.Namespace) -> Report:
    out = out.resolve()  # the sidecar reads a relative dataset path under its data roots
    notes: list[str] = []
    profile = choose_profile(args.profile, notes)
    report = Report(profile)
    for note in notes:
        report.add(note)
    if out.exists():
        shutil.rmtree(out)
    with report.timed("sample scene"):
        scene = make_sample_scene(out / "scene", num_views=args.views, resolution=args.resolution)
    report.add(f"Sample scene: {len(scene.views)} views at {args.resolution} px in {scene.root}")
    sidecar_started = time.monotonic()
    with running_sidecar(out / "sidecar", profile, scene.root) as connection_file:
        client = Client(connection_file, client_name="edit3d-demo")
        hello = client.connect(timeout_s=60)
        report.timings["sidecar start"] = time.monotonic() - sidecar_started
        report.add(f"Sidecar: protocol {hello.server_version}, device {hello.device}")
        created = client.request(SessionCreate(name="demo", dataset_path=str(scene.root),
                                               preset=args.preset), timeout_s=60)
        assert isinstance(created, SessionSummary)
        session = Session(client, created.session_id)
        rows = _run_stages(session, preview_views(scene), out, report, args)
        with report.timed("contact sheet and figures"):
            report.sheet = contact_sheet(_sheet_rows(rows, report, args),
                                         report.folder(out, "previews") / "contact_sheet.png",
                                         title=_sheet_title(report.profile))
            if profile == "standin":
                report.figures = _report_figures(scene, rows, report)
        with report.timed("export"):
            _export(session, out, report)
        _write_history(session.summary(), report)
        client.close()
    return report


def _run_stages(session: Session, views: list[str], out: Path, report: Report,
                args: argparse.Namespace) -> dict[str, list[Path]]:
    """Base, the turns and the fine-tune, with preview renders of `views` after each (no
    live frames during training: nobody watches them here, and on a CPU they cost time)."""
    folder = report.folder(out, "previews")
    rows: dict[str, list[Path]] = {}
    with report.timed("base"):
        session.run(JobTrainBase(session_id=session.session_id, steps=args.base_steps,
                                 preview_every=0), "base")
    summary = session.summary()
    cameras = cameras_of(summary, views)
    with report.timed("preview renders"):
        rows["base"] = render_previews(session, cameras, folder, "0-base")
    for number, plan in enumerate(report.turns, start=1):
        if report.profile != "standin":  # the stand-in's masks are the ground truth
            _preview_masks(session, cameras[0], plan, out, number, report)
        request = _turn_request(session.session_id, plan, report.profile, args,
                                len(summary.view_names))
        with report.timed(f"turn {number}"):
            session.run(request, f"turn {number}")
        report.add(f"Turn {number}: {plan.instruction!r} (edit {list(plan.edit_queries)}, "
                   f"keep {list(plan.keep_queries)}) in {report.timings[f'turn {number}']:.0f} s")
        with report.timed("preview renders"):
            rows[f"turn {number}"] = render_previews(session, cameras, folder, f"{number}-turn")
    classical = report.profile == "standin"
    with report.timed("super-resolution fine-tune"):
        session.run(JobRefine(session_id=session.session_id, steps=args.refine_steps,
                              scale=REFINE_SCALE, upscaler="lanczos" if classical else None),
                    "refine")
    report.add(f"Super-resolution fine-tune: {args.refine_steps} iterations on x{REFINE_SCALE} "
               f"targets by the {CLASSICAL_UPSCALER_LABEL if classical else 'SR networks'}")
    with report.timed("preview renders"):
        rows["refine"] = render_previews(
            session, [enlarged(c, REFINE_PREVIEW_SCALE) for c in cameras], folder,
            f"{len(report.turns) + 1}-refine")
    return rows


def _turn_request(session_id: str, plan: TurnPlan, profile: str, args: argparse.Namespace,
                  view_count: int) -> JobRunTurn:
    schedule: dict[str, int] = {}
    if profile == "standin":
        # The stand-in's edit depends only on the condition image (the pre-render), so
        # re-editing a view would repeat it: every view is edited once, before step 1.
        schedule = {"edit_rate": args.turn_steps, "edit_count": view_count}
    return JobRunTurn(session_id=session_id, instruction=plan.instruction,
                      edit_queries=plan.edit_queries, keep_queries=plan.keep_queries,
                      caption=plan.caption, steps=args.turn_steps, preview_every=0,
                      editor=STAND_IN_EDITOR if profile == "standin" else "ip2p", **schedule)


def _sheet_rows(rows: dict[str, list[Path]], report: Report,
                args: argparse.Namespace) -> list[SheetRow]:
    labels = {"base": f"base: nerfacto, {args.base_steps} iterations"}
    for number, plan in enumerate(report.turns, start=1):
        keep = f", keep {', '.join(plan.keep_queries)}" if plan.keep_queries else ""
        labels[f"turn {number}"] = f"turn {number}: {plan.instruction!r}{keep}"
    maker = "classical upscaler" if report.profile == "standin" else "SR networks"
    labels["refine"] = (f"fine-tune: {args.refine_steps} iterations on x{REFINE_SCALE} targets "
                        f"by the {maker}")
    return [SheetRow(labels[stage], [np.asarray(Image.open(p).convert("RGB")) for p in paths])
            for stage, paths in rows.items()]


def _sheet_title(profile: str) -> str:
    if profile == "standin":
        return f"{STAND_IN_LABEL}; fine-tune targets by the {CLASSICAL_UPSCALER_LABEL}"
    return PIPELINE_CHECK if profile == "tiny" else "Edit3D with the published networks"


def _preview_masks(session: Session, camera: Camera, plan: TurnPlan, out: Path, number: int,
                   report: Report) -> None:
    messages = session.run(JobPreviewMasks(session_id=session.session_id, camera=camera,
                                           edit_queries=plan.edit_queries,
                                           keep_queries=plan.keep_queries,
                                           caption=plan.caption), f"masks {number}")
    masks = next(m for m in messages if isinstance(m, MasksResult))
    stem = Path(camera.name or "view").stem
    save_image(masks.soft_mask[..., None].repeat(3, axis=-1),
               report.folder(out, "previews") / f"{number}-mask-{stem}.png")
    ious = ", ".join(f"{q}: IoU {i:.2f}" for q, i in zip(masks.queries, masks.iou, strict=True))
    report.add(f"Turn {number} mask preview: caption {masks.caption!r}; {ious}")


def _report_figures(scene: SampleScene, rows: dict[str, list[Path]],
                    report: Report) -> TurnFigures:
    """Retention and locality of the two stand-in turns, on the previewed views."""
    names = [_view_of(path) for path in rows["base"]]
    stages = {stage: [np.asarray(Image.open(p).convert("RGB")) for p in rows[stage]]
              for stage in ("base", "turn 1", "turn 2", "refine")}
    regions = [[_query_region(scene, plan.edit_queries, name) for name in names]
               for plan in report.turns]
    figures = turn_figures(stages["base"], stages["turn 1"], stages["turn 2"], *regions)
    report.add(f"Measured on {len(names)} views ({STAND_IN_LABEL}): "
               f"turn 1 changed the shirt (PSNR vs base {figures.turn1_change:.1f} dB), "
               f"turn 2 changed the trousers (PSNR vs turn 1 {figures.turn2_change:.1f} dB)")
    report.add(f"Retention: turn-1 region after turn 2 vs after turn 1, PSNR "
               f"{figures.retention:.1f} dB")
    report.add(f"Locality: outside both masks (grown {MASK_MARGIN_PX} px) after turn 2 vs "
               f"base, PSNR {figures.locality:.1f} dB")
    kept = fine_tune_kept(stages["turn 2"], stages["refine"])
    report.add(f"Fine-tune kept the edited scene: its x{REFINE_PREVIEW_SCALE} renders, "
               f"box-downsampled, vs turn 2, PSNR {kept:.1f} dB")
    return figures


def fine_tune_kept(turn2: list[np.ndarray], refine: list[np.ndarray]) -> float:
    """PSNR (dB, mean over views) of the fine-tuned renders, box-downsampled to the turn's
    render size, against the turn's renders."""
    values = []
    for small, big in zip(turn2, refine, strict=True):
        height, width = small.shape[:2]
        down = np.asarray(Image.fromarray(big).resize((width, height), Image.BOX))
        values.append(psnr(down, small, np.ones((height, width), bool)))
    return float(np.mean(values))


def _view_of(preview: Path) -> str:
    """Dataset view name of a preview file `<stage>-<stem>.png`."""
    return preview.stem.split("-", 2)[2]


def _query_region(scene: SampleScene, queries: tuple[str, ...], view: str) -> np.ndarray:
    ids = [obj.id for obj in scene.objects if obj.name in queries]
    return np.any([scene.object_mask(object_id, view) for object_id in ids], axis=0)


def _export(session: Session, out: Path, report: Report) -> None:
    messages = session.run(JobExport(session_id=session.session_id, kind="point_cloud",
                                     format="ply", budget=200_000,
                                     max_views=EXPORT_VIEWS), "export")
    export = next(m for m in messages if hasattr(m, "points"))
    session_dir = next((out / "sidecar" / "sessions").glob(f"{session.session_id}*"))
    target = report.folder(out, "exports") / "point_cloud.ply"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(session_dir / export.path, target)
    count = 0 if export.points is None else len(export.points)
    report.add(f"Exported {count} points (world frame) to {target}")


def _write_history(summary: SessionSummary, report: Report) -> None:
    for turn in summary.turns:
        report.add(f"History: {turn.turn_id} kind={turn.kind} parent={turn.parent} "
                   f"status={turn.status} instruction={turn.instruction!r}")


def write_report(report: Report, out: Path) -> None:
    header = ["# Edit3D demo report", ""]
    if report.profile == "tiny":
        header += [f"**{PIPELINE_CHECK}.**", ""]
    elif report.profile == "standin":
        header += [f"**Made by the {STAND_IN_LABEL}; fine-tune targets by the "
                   f"{CLASSICAL_UPSCALER_LABEL}.**", ""]
    body = [f"- {line}" for line in report.lines]
    timing_rows = ["", "| phase | seconds |", "|---|---|"]
    timing_rows += [f"| {phase} | {seconds:.1f} |" for phase, seconds in report.timings.items()]
    sheet = report.folder(Path("."), "previews") / "contact_sheet.png"
    images = ["", f"Previews (rows: base, turn 1, turn 2, fine-tune): `{sheet}`"]
    (out / "report.md").write_text("\n".join(header + body + timing_rows + images) + "\n")
    (out / "timings.json").write_text(json.dumps(report.timings, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--profile", choices=("auto", "real", "standin", "tiny"), default="auto",
                        help="auto: real weights if present, else the stand-in (default: auto)")
    parser.add_argument("--preset", default="tiny", help="field preset (default: tiny)")
    parser.add_argument("--views", type=int, default=24, help="sample-scene views (default: 24)")
    parser.add_argument("--resolution", type=int, default=64,
                        help="sample-scene image side in px (default: 64)")
    parser.add_argument("--base-steps", type=int, default=560,
                        help="base training iterations (default: 560)")
    parser.add_argument("--turn-steps", type=int, default=130,
                        help="iterations per turn (default: 130)")
    parser.add_argument("--refine-steps", type=int, default=100,
                        help="super-resolution fine-tune iterations (default: 100)")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.monotonic()
    report = run_demo(args.out, args)
    report.timings["total"] = time.monotonic() - started
    write_report(report, args.out)
    print(f"[demo] report: {args.out / 'report.md'} (total {report.timings['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
