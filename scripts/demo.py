"""The main job: a scripted multi-turn Edit3D session through a real sidecar.

Generates the sample scene, starts `edit3d-sidecar`, and drives it through the protocol
client exactly as the Blender add-on does: create a session, train the base, preview ADSS
masks, run two turns (the second an additive edit with a keep query), render previews after
each turn, export a point cloud, and write `report.md`.

Real model weights are used when every network is cached (or can be fetched); otherwise the
tiny profile runs and every output is labelled a pipeline check, not an edit.
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
from PIL import Image

from edit3d.models import registry
from edit3d.scene.sample import make_sample_scene
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


@dataclass
class Report:
    profile: str
    lines: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def folder(self, out: Path, kind: str) -> Path:
        """Where outputs of `kind` go; tiny-profile outputs say so in their folder name."""
        return out / (f"{kind}-pipeline-check" if self.profile == "tiny" else kind)

    def add(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)


def choose_profile(requested: str, report_lines: list[str]) -> str:
    """`real` only when every network is on disk or fetchable now; say plainly why not."""
    if requested == "tiny":
        return "tiny"
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
        f"(missing: {', '.join(missing)}). Running the tiny profile instead: every image, "
        "mesh and number below is a PIPELINE CHECK of seeded random miniature networks, "
        "not an edit. Fetch the weights with `edit3d models fetch --all` (or set "
        "EDIT3D_MODELS_DIR) and run again for real edits."
    )
    if requested == "real":
        raise SystemExit(report_lines[-1])
    return "tiny"


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
               "--bind", "tcp://127.0.0.1:0", "--profile", profile,
               "--data-root", str(data_root)]
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


def contact_sheet(rows: dict[str, list[Path]], path: Path) -> None:
    """One image: a row of views per stage, so a reader sees the turns side by side."""
    images = {stage: [_fit(np.asarray(Image.open(p).convert("RGB")), rows) for p in ps]
              for stage, ps in rows.items()}
    sheet = np.concatenate([np.concatenate(row, axis=1) for row in images.values()], axis=0)
    save_image(sheet, path)


def _fit(image: np.ndarray, rows: dict[str, list[Path]]) -> np.ndarray:
    """Every tile at the base renders' size (the fine-tuned field renders at x4)."""
    height, width = np.asarray(Image.open(rows["base"][0])).shape[:2]
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


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
        contact_sheet(rows, report.folder(out, "previews") / "contact_sheet.png")
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
    for number, plan in enumerate(TURNS, start=1):
        _preview_masks(session, cameras[0], plan, out, number, report)
        started = time.monotonic()
        session.run(JobRunTurn(session_id=session.session_id, instruction=plan.instruction,
                               edit_queries=plan.edit_queries, keep_queries=plan.keep_queries,
                               caption=plan.caption, steps=args.turn_steps), f"turn {number}")
        report.timings[f"turn {number}"] = time.monotonic() - started
        report.add(f"Turn {number}: {plan.instruction!r} (edit {list(plan.edit_queries)}, "
                   f"keep {list(plan.keep_queries)}) in {report.timings[f'turn {number}']:.0f} s")
        rows[f"turn {number}"] = render_previews(session, cameras,
                                                 report.folder(out, "previews"), f"{number}-turn")
    started = time.monotonic()
    session.run(JobRefine(session_id=session.session_id, steps=args.refine_steps), "refine")
    report.timings["super-resolution fine-tune"] = time.monotonic() - started
    report.add(f"Super-resolution fine-tune: {args.refine_steps} iterations on x4 targets")
    rows["refine"] = render_previews(session, cameras, report.folder(out, "previews"),
                                     f"{len(TURNS) + 1}-refine")
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
    body = [f"- {line}" for line in report.lines]
    timing_rows = ["", "| phase | seconds |", "|---|---|"]
    timing_rows += [f"| {phase} | {seconds:.1f} |" for phase, seconds in report.timings.items()]
    sheet = report.folder(Path("."), "previews") / "contact_sheet.png"
    images = ["", f"Previews (rows: base, turn 1, turn 2, fine-tune): `{sheet}`"]
    (out / "report.md").write_text("\n".join(header + body + timing_rows + images) + "\n")
    (out / "timings.json").write_text(json.dumps(report.timings, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--profile", choices=("auto", "real", "tiny"), default="auto")
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
