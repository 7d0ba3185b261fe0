"""The main job: a scripted multi-turn Edit3D session through a real sidecar.

Generates the sample scene, starts `edit3d-sidecar`, and drives it through the protocol
client exactly as the Blender add-on does: create a session, train the base, preview ADSS
masks, run two turns (the second an additive edit with a keep query), render previews after
each turn, export a point cloud, and write `report.md`.

Real model weights are used when every network is cached (or can be fetched). Without them
the stand-in profile runs: a deterministic recolour editor with ground-truth part masks in
place of InstructPix2Pix and ADSS (`edit3d.editing.standin`, allowed on the sidecar's
command line), no super-resolution fine-tune, and Lanczos + unsharp tiles on the contact
sheet; every output says so. `--profile tiny` runs the tiny random networks instead (a
pipeline check, not an edit).
"""

from __future__ import annotations

import argparse
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
from PIL import Image, ImageFilter

from edit3d.editing.standin import STAND_IN_LABEL
from edit3d.models import registry
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
        "Edit3D's own. No super-resolution fine-tune runs (no SR weights); contact-sheet "
        "tiles are Lanczos + unsharp upscales of the renders. Fetch the weights with "
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


def cameras_of(summary: SessionSummary, count: int) -> list[Camera]:
    picks = np.linspace(0, len(summary.view_names) - 1, count).round().astype(int)
    cameras = []
    for index in picks:
        fx, fy, cx, cy, width, height = summary.view_intrinsics[index]
        cameras.append(Camera(c2w=np.ascontiguousarray(summary.view_c2w[index]), fx=fx, fy=fy,
                              cx=cx, cy=cy, width=int(width), height=int(height),
                              name=summary.view_names[index]))
    return cameras


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


def contact_sheet(rows: dict[str, list[Path]], path: Path, *, classical: bool = False) -> None:
    """One image: a row of views per stage, so a reader sees the turns side by side.
    `classical`: tiles are Lanczos + unsharp upscales to >= MIN_TILE_PX (no SR network)."""
    images = {stage: [_fit(np.asarray(Image.open(p).convert("RGB")), rows) for p in ps]
              for stage, ps in rows.items()}
    if classical:
        images = {stage: [classical_upscale(tile, MIN_TILE_PX) for tile in tiles]
                  for stage, tiles in images.items()}
    sheet = np.concatenate([np.concatenate(row, axis=1) for row in images.values()], axis=0)
    save_image(sheet, path)


def _fit(image: np.ndarray, rows: dict[str, list[Path]]) -> np.ndarray:
    """Every tile at the base renders' size (the fine-tuned field renders at x4)."""
    height, width = np.asarray(Image.open(rows["base"][0])).shape[:2]
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def classical_upscale(image: np.ndarray, min_side: int) -> np.ndarray:
    """uint8 [H, W, 3] upscaled by a whole factor to >= `min_side` px: Lanczos resampling,
    then an unsharp mask (the classical stand-in for Real-ESRGAN)."""
    height, width = image.shape[:2]
    factor = max(1, -(-min_side // min(height, width)))
    big = Image.fromarray(image).resize((width * factor, height * factor), Image.LANCZOS)
    sharp = big.filter(ImageFilter.UnsharpMask(radius=factor, percent=80, threshold=2))
    return np.asarray(sharp)


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
    notes: list[str] = []
    profile = choose_profile(args.profile, notes)
    report = Report(profile)
    for note in notes:
        report.add(note)
    if out.exists():
        shutil.rmtree(out)
    scene = make_sample_scene(out / "scene", num_views=args.views, resolution=args.resolution)
    report.add(f"Sample scene: {len(scene.views)} views at {args.resolution} px in {scene.root}")
    with running_sidecar(out / "sidecar", profile, scene.root) as connection_file:
        client = Client(connection_file, client_name="edit3d-demo")
        hello = client.connect(timeout_s=60)
        report.add(f"Sidecar: protocol {hello.server_version}, device {hello.device}")
        created = client.request(SessionCreate(name="demo", dataset_path=str(scene.root),
                                               preset=args.preset), timeout_s=60)
        assert isinstance(created, SessionSummary)
        session = Session(client, created.session_id)
        rows = _run_turns(session, out, report, args)
        contact_sheet(rows, report.folder(out, "previews") / "contact_sheet.png",
                      classical=profile == "standin")
        if profile == "standin":
            _report_figures(scene, rows, report)
        _export(session, out, report)
        _write_history(session.summary(), report)
        client.close()
    return report


def _run_turns(session: Session, out: Path, report: Report,
               args: argparse.Namespace) -> dict[str, list[Path]]:
    rows: dict[str, list[Path]] = {}
    started = time.monotonic()
    session.run(JobTrainBase(session_id=session.session_id, steps=args.base_steps), "base")
    report.timings["base"] = time.monotonic() - started
    cameras = cameras_of(session.summary(), 3)
    rows["base"] = render_previews(session, cameras, report.folder(out, "previews"), "0-base")
    editor = STAND_IN_EDITOR if report.profile == "standin" else "ip2p"
    for number, plan in enumerate(report.turns, start=1):
        if report.profile != "standin":  # the stand-in's masks are the ground truth
            _preview_masks(session, cameras[0], plan, out, number, report)
        started = time.monotonic()
        session.run(JobRunTurn(session_id=session.session_id, instruction=plan.instruction,
                               edit_queries=plan.edit_queries, keep_queries=plan.keep_queries,
                               caption=plan.caption, steps=args.turn_steps, editor=editor),
                    f"turn {number}")
        report.timings[f"turn {number}"] = time.monotonic() - started
        report.add(f"Turn {number}: {plan.instruction!r} (edit {list(plan.edit_queries)}, "
                   f"keep {list(plan.keep_queries)}) in {report.timings[f'turn {number}']:.0f} s")
        rows[f"turn {number}"] = render_previews(session, cameras,
                                                 report.folder(out, "previews"), f"{number}-turn")
    if report.profile == "standin":
        report.add("Super-resolution fine-tune: skipped (no SR weights; tiles are classical "
                   "Lanczos + unsharp upscales)")
        return rows
    started = time.monotonic()
    session.run(JobRefine(session_id=session.session_id, steps=args.refine_steps), "refine")
    report.timings["super-resolution fine-tune"] = time.monotonic() - started
    report.add(f"Super-resolution fine-tune: {args.refine_steps} iterations on x4 targets")
    rows["refine"] = render_previews(session, cameras, report.folder(out, "previews"),
                                     f"{len(report.turns) + 1}-refine")
    return rows


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


def _report_figures(scene: SampleScene, rows: dict[str, list[Path]], report: Report) -> None:
    """Retention and locality of the two stand-in turns, on the previewed views."""
    names = [_view_of(path) for path in rows["base"]]
    stages = {stage: [np.asarray(Image.open(p).convert("RGB")) for p in rows[stage]]
              for stage in ("base", "turn 1", "turn 2")}
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


def _view_of(preview: Path) -> str:
    """Dataset view name of a preview file `<stage>-<stem>.png`."""
    return preview.stem.split("-", 2)[2]


def _query_region(scene: SampleScene, queries: tuple[str, ...], view: str) -> np.ndarray:
    ids = [obj.id for obj in scene.objects if obj.name in queries]
    return np.any([scene.object_mask(object_id, view) for object_id in ids], axis=0)


def _export(session: Session, out: Path, report: Report) -> None:
    messages = session.run(JobExport(session_id=session.session_id, kind="point_cloud",
                                     format="ply", budget=200_000), "export")
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
        header += [f"**Made by the {STAND_IN_LABEL}.**", ""]
    body = [f"- {line}" for line in report.lines]
    timing_rows = ["", "| phase | seconds |", "|---|---|"]
    timing_rows += [f"| {phase} | {seconds:.1f} |" for phase, seconds in report.timings.items()]
    sheet = report.folder(Path("."), "previews") / "contact_sheet.png"
    stages = "base, turn 1, turn 2" + ("" if report.profile == "standin" else ", fine-tune")
    images = ["", f"Previews (rows: {stages}): `{sheet}`"]
    (out / "report.md").write_text("\n".join(header + body + timing_rows + images) + "\n")
    (out / "timings.json").write_text(json.dumps(report.timings, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--profile", choices=("auto", "real", "standin", "tiny"), default="auto",
                        help="auto: real weights if present, else the stand-in (default: auto)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--base-steps", type=int, default=300)
    parser.add_argument("--turn-steps", type=int, default=120)
    parser.add_argument("--refine-steps", type=int, default=60)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = run_demo(args.out, args)
    write_report(report, args.out)
    print(f"[demo] report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
