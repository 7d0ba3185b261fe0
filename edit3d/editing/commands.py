"""`edit3d train | edit | preview | render | history | checkout | resume`: a workspace from the
shell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edit3d.cli_options import add_device_option, add_workspace_option, resolve_device
from edit3d.editing.settings import EditorSettings, editor_setting_default
from edit3d.progress import ProgressEvent


def add_commands(subparsers: Any) -> None:
    _add_train(subparsers)
    _add_edit(subparsers)
    _add_preview(subparsers)
    _add_render(subparsers)
    _add_history(subparsers)
    _add_checkout(subparsers)
    _add_resume(subparsers)


def _workspace_arg(parser: argparse.ArgumentParser) -> None:
    add_workspace_option(parser)
    add_device_option(parser)


def _add_train(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="create a workspace and train its base nerfacto field",
        description="Create a workspace over DATA (nerfstudio transforms.json, ns-process-data "
        "output or Blender-synthetic folder) and train the base field (paper Sec. 4.1), or "
        "start from an existing `ns-train nerfacto` run with --nerfstudio-run.",
    )
    parser.add_argument("data", nargs="?", type=Path, help="dataset folder")
    _workspace_arg(parser)
    parser.add_argument("--nerfstudio-run", type=Path, help="config.yml of an ns-train run")
    parser.add_argument("--preset", default="small", help="paper | small | tiny (default small)")
    parser.add_argument("--steps", type=int, help="iterations (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_train)


def _add_edit(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "edit",
        help="run editing turns (one per --turn, each from the previous)",
        description="Run one editing turn per --turn, in order, starting from the head (or "
        "--parent). Region options apply to every turn.",
    )
    _workspace_arg(parser)
    parser.add_argument("--turn", action="append", required=True, help="an instruction")
    _add_turn_options(parser)
    parser.add_argument("--steps", type=int, help="iterations per turn (default: preset's)")
    parser.add_argument("--edit-rate", type=int, default=10)
    parser.add_argument("--edit-count", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.0025)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_edit)


def _add_preview(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "preview",
        help="preview a turn's edit on one camera (before / mask / after PNGs)",
        description="Render one camera from the head (or --parent), segment the query regions, "
        "run the editor and fuse, exactly as the turn's first edit of that view would, once "
        "per seed. Writes seed_<s>_{before,mask,after}.png and sheet.png (one row per seed).",
    )
    _workspace_arg(parser)
    parser.add_argument("--turn", required=True, help="the instruction to preview")
    parser.add_argument(
        "--camera",
        required=True,
        help='a dataset view name, or JSON (inline or a .json file) {"c2w": 4x4 rows, '
        '"fx", "fy", "cx", "cy", "width", "height"} in the dataset\'s world frame',
    )
    _add_turn_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="the turn's seed (default 0)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="preview this many seeds from --seed on (default 1)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(func=run_preview)


def _add_turn_options(parser: argparse.ArgumentParser) -> None:
    """What a turn and a preview of it share: regions, mode, editor and its settings."""
    parser.add_argument("--edit-query", action="append", default=[], help="region to edit")
    parser.add_argument("--keep-query", action="append", default=[], help="region to keep")
    parser.add_argument("--caption", help="caption for segmentation (default: automatic)")
    parser.add_argument("--mode", choices=("edit3d", "in2n"), default="edit3d")
    parser.add_argument("--editor", default="ip2p", help="ip2p | ip2p-tiny | package.module:Cls")
    parser.add_argument(
        "--profile",
        choices=("real", "tiny"),
        default="real",
        help="segmentation models: real weights, or tiny random ones (pipeline check only)",
    )
    parser.add_argument("--parent", help="turn id to start from (default: head)")
    group = parser.add_argument_group("editor settings (InstructPix2Pix)")
    group.add_argument(
        "--guidance-scale", type=float, help=_default_help("text guidance weight", "guidance_scale")
    )
    group.add_argument(
        "--image-guidance-scale",
        type=float,
        help=_default_help("image guidance weight", "image_guidance_scale"),
    )
    group.add_argument(
        "--diffusion-steps", type=int, help=_default_help("DDIM denoising steps", "diffusion_steps")
    )
    group.add_argument(
        "--noise-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="noise level window as fractions of the diffusion timesteps "
        f"(default {editor_setting_default('lower_bound')} "
        f"{editor_setting_default('upper_bound')})",
    )
    group.add_argument(
        "--resolution",
        type=int,
        help="long side in pixels the diffusion runs at (default: the editor's, 512 for ip2p)",
    )


def _default_help(what: str, name: str) -> str:
    return f"{what} (default {editor_setting_default(name)})"


def editor_settings_from_args(args: argparse.Namespace) -> EditorSettings:
    """The settings the user set on the command line; the rest keep their defaults."""
    given: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("guidance_scale", "image_guidance_scale", "diffusion_steps", "resolution")
        if getattr(args, name) is not None
    }
    if args.noise_range is not None:
        given["lower_bound"], given["upper_bound"] = args.noise_range
    return EditorSettings.from_dict(given)


def _add_render(subparsers: Any) -> None:
    parser = subparsers.add_parser("render", help="render dataset views of a turn to PNGs")
    _workspace_arg(parser)
    parser.add_argument("--turn", help="turn id (default: head)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--views", nargs="*", help="view names (default: all)")
    parser.add_argument("--width", type=int, help="render width (default: the view's)")
    parser.add_argument("--height", type=int, help="render height (default: the view's)")
    parser.set_defaults(func=run_render)


def _add_history(subparsers: Any) -> None:
    parser = subparsers.add_parser("history", help="list the workspace's turns as a tree")
    _workspace_arg(parser)
    parser.set_defaults(func=run_history)


def _add_checkout(subparsers: Any) -> None:
    parser = subparsers.add_parser("checkout", help="make a finished turn the head")
    _workspace_arg(parser)
    parser.add_argument("turn_id")
    parser.set_defaults(func=run_checkout)


def _add_resume(subparsers: Any) -> None:
    parser = subparsers.add_parser("resume", help="resume an interrupted or cancelled turn")
    _workspace_arg(parser)
    parser.add_argument("turn_id")
    parser.add_argument("--editor", help="editor spec (default: the turn's)")
    parser.add_argument("--profile", choices=("real", "tiny"), default="real")
    parser.set_defaults(func=run_resume)


# --- commands --------------------------------------------------------------------------


def run_train(args: argparse.Namespace) -> int:
    from edit3d.workspace import WORKSPACE_FILE, Workspace

    device = resolve_device(args.device)
    if (args.workspace / WORKSPACE_FILE).is_file():
        workspace = Workspace.open(args.workspace, device=device)
        workspace.recover()
    elif args.nerfstudio_run is not None:
        workspace = Workspace.create(
            args.workspace, nerfstudio_run=args.nerfstudio_run, preset=args.preset, device=device
        )
        print(f"imported {args.nerfstudio_run} as the base of {args.workspace}")
        return 0
    elif args.data is None:
        print("edit3d train: give DATA or --nerfstudio-run", file=sys.stderr)
        return 2
    else:
        workspace = Workspace.create(
            args.workspace, dataset=args.data, preset=args.preset, device=device
        )
    with ProgressBars() as bars:
        record = workspace.train_base(steps=args.steps, progress=bars, seed=args.seed)
    print(f"base trained: {record.steps} iterations in {record.timings.get('train_s', 0):.0f} s")
    return 0


def run_edit(args: argparse.Namespace) -> int:
    from edit3d.editing.turns import TurnSpec
    from edit3d.workspace import Workspace, load_editor_for

    device = resolve_device(args.device)
    workspace = Workspace.open(args.workspace, device=device)
    workspace.recover()
    parent = args.parent
    editor = load_editor_for(args.editor, device)  # once for all turns
    mask_provider = None
    if args.edit_query or args.keep_query:
        mask_provider = _segmenter(args.profile, device).mask_provider()
    for instruction in args.turn:
        spec = TurnSpec(
            instruction,
            edit_queries=tuple(args.edit_query),
            keep_queries=tuple(args.keep_query),
            caption=args.caption,
            mode=args.mode,
            steps=args.steps,
            edit_rate=args.edit_rate,
            edit_count=args.edit_count,
            lr=args.lr,
            seed=args.seed,
            editor=args.editor,
            editor_settings=editor_settings_from_args(args),
        )
        with ProgressBars() as bars:
            record = workspace.run_turn(
                spec, parent, editor=editor, mask_provider=mask_provider, progress=bars
            )
        parent = record.id
        print(f"{record.id}: {instruction!r} finished ({_seconds(record.timings)})")
        if args.editor.endswith("-tiny") or args.profile == "tiny":
            print("  (tiny models: a pipeline check, not an edit)")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from edit3d.editing.preview import camera_from_text, write_preview
    from edit3d.editing.turns import TurnSpec
    from edit3d.editing.view_edit import preview_edit
    from edit3d.workspace import Workspace, load_editor_for

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    device = resolve_device(args.device)
    workspace = Workspace.open(args.workspace, device=device)
    field = workspace.load_field(args.parent)
    camera = camera_from_text(args.camera, field)
    editor = load_editor_for(args.editor, device)
    mask_provider = None
    if args.edit_query or args.keep_query:
        mask_provider = _segmenter(args.profile, device).mask_provider()
    edits = []
    for seed in range(args.seed, args.seed + args.seeds):
        spec = TurnSpec(
            args.turn,
            edit_queries=tuple(args.edit_query),
            keep_queries=tuple(args.keep_query),
            caption=args.caption,
            mode=args.mode,
            seed=seed,
            editor=args.editor,
            editor_settings=editor_settings_from_args(args),
        )
        edits.append((seed, preview_edit(field, camera, spec, editor, mask_provider)))
    write_preview(args.out, edits)
    print(f"previewed {args.turn!r} on {camera.name} with {args.seeds} seed(s): {args.out}")
    if args.editor.endswith("-tiny") or args.profile == "tiny":
        print("  (tiny models: a pipeline check, not an edit)")
    return 0


def run_render(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from edit3d.editing.turns import safe_file_name
    from edit3d.workspace import Workspace

    workspace = Workspace.open(args.workspace, device=resolve_device(args.device))
    field = workspace.load_field(args.turn)
    names = args.views or [view.name for view in field.views]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        result = field.render(field.view(name), width=args.width, height=args.height)
        pixels = np.round(result.rgb * 255).astype(np.uint8)
        Image.fromarray(pixels).save(args.out / f"{safe_file_name(name)}.png")
    print(f"rendered {len(names)} views of {args.turn or workspace.head} to {args.out}")
    return 0


def run_history(args: argparse.Namespace) -> int:
    from edit3d.workspace import Workspace

    workspace = Workspace.open(args.workspace)
    for line in history_lines(workspace):
        print(line)
    return 0


def run_checkout(args: argparse.Namespace) -> int:
    from edit3d.workspace import Workspace

    workspace = Workspace.open(args.workspace)
    workspace.checkout(args.turn_id)
    print(f"head is now {args.turn_id}; the next turn branches from it")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    from edit3d.workspace import Workspace

    device = resolve_device(args.device)
    workspace = Workspace.open(args.workspace, device=device)
    workspace.recover()
    spec = workspace.turn(args.turn_id).turn_spec
    editor = None
    if args.editor is not None:
        from edit3d.workspace import load_editor_for

        editor = load_editor_for(args.editor, device)
    mask_provider = None
    if spec is not None and (spec.edit_queries or spec.keep_queries):
        mask_provider = _segmenter(args.profile, device).mask_provider()
    with ProgressBars() as bars:
        record = workspace.resume_turn(
            args.turn_id, editor=editor, mask_provider=mask_provider, progress=bars
        )
    print(f"{record.id} finished ({_seconds(record.timings)})")
    return 0


# --- helpers ---------------------------------------------------------------------------


def history_lines(workspace: Any) -> list[str]:
    """The history as an indented tree, head marked with '*'."""
    records = workspace.turns
    children: dict[str | None, list[Any]] = {}
    for record in records:
        children.setdefault(record.parent, []).append(record)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for record in children.get(parent, []):
            mark = "*" if record.id == workspace.head else " "
            what = record.spec.get("instruction", "") if record.kind == "edit" else ""
            mode = f" [{record.spec.get('mode')}]" if record.kind == "edit" else ""
            if record.kind == "edit":
                settings = EditorSettings.from_dict(record.spec.get("editor_settings"))
                mode += f" seed {record.spec.get('seed', 0)} · {settings.summary()}"
            lines.append(
                f"{mark} {'  ' * depth}{record.id:<10} {record.kind:<6} {record.status:<11}"
                f" {_seconds(record.timings):>8}  {what}{mode}"
            )
            walk(record.id, depth + 1)

    walk(None, 0)
    return lines


def _seconds(timings: dict[str, float]) -> str:
    total = timings.get("total_s")
    return f"{total:.0f} s" if total is not None else "-"


def _segmenter(profile: str, device: str) -> Any:
    from edit3d.segmentation.adss import AdssSegmenter

    return AdssSegmenter(profile=profile, device=device)


class ProgressBars:
    """A progress callback drawing one tqdm bar per phase (train_base, prerender, turn, ...)."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm import tqdm

        bar = self._bars.get(event.phase)
        if bar is None:
            bar = self._bars[event.phase] = tqdm(total=event.total, desc=event.phase, unit="it")
        bar.n = event.step
        postfix = {}
        if event.loss is not None:
            postfix["loss"] = f"{event.loss:.4f}"
        if event.extra.get("edited_view"):
            postfix["edited"] = str(event.extra["edited_view"])
        bar.set_postfix(postfix, refresh=False)
        bar.refresh()

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *_exc: object) -> None:
        for bar in self._bars.values():
            bar.close()
