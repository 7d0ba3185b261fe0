"""`edit3d train | edit | preview | render | history | checkout | resume`: a workspace from the
shell."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from edit3d.cli_options import (
    CliError,
    add_device_option,
    add_workspace_option,
    ctrl_c_cancels,
    non_negative_int,
    open_workspace,
    positive_float,
    positive_int,
    require_node,
    require_workspace,
    resolve_device,
)
from edit3d.editing.settings import EditorSettings, editor_setting_default
from edit3d.editing.spec import turn_choices, turn_default
from edit3d.field.catalogue import DEFAULT_PRESET, preset_names
from edit3d.progress import ProgressEvent

ONE_PER_GPU = "gpus"
"""`--editors` without a number: one editor per GPU Ray sees."""

CPU_SECONDS_PER_STEP = {"paper": 4.6, "small": 1.3, "tiny": 0.5}
"""Base-training seconds per iteration of each preset on a 2-core CPU (measured; see
docs/cli.md): what `train` quotes when it runs without CUDA."""


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


def _add_mask_options(parser: argparse.ArgumentParser, masks_help: str) -> None:
    masks = parser.add_mutually_exclusive_group()
    masks.add_argument("--masks", type=Path, help=masks_help)
    masks.add_argument(
        "--mask-provider",
        metavar="MODULE:FACTORY",
        help="import path of a factory making the region masks instead of ADSS (it gets "
        "dataset_root and/or device if it declares them; e.g. "
        "edit3d.editing.standin:ground_truth_masks for a sample scene's parts)",
    )


def _add_train(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="create a workspace and train its base field (nerfacto unless --backend)",
        description="Create a workspace over DATA (nerfstudio transforms.json, ns-process-data "
        "output or Blender-synthetic folder) and train the base field (paper Sec. 4.1), or "
        "start from an existing `ns-train nerfacto` run with --nerfstudio-run. On an existing "
        "workspace it continues an interrupted base training.",
    )
    parser.add_argument("data", nargs="?", type=Path, help="dataset folder")
    _workspace_arg(parser)
    parser.add_argument("--nerfstudio-run", type=Path, help="config.yml of an ns-train run")
    parser.add_argument(
        "--preset",
        choices=preset_names(),
        default=DEFAULT_PRESET,
        help="field size and schedule: paper (Sec. 4.1, GPU), small, tiny (a CPU check)",
    )
    parser.add_argument(
        "--backend",
        help="field backend by its registry name, e.g. nerfacto (default: the registry's "
        "default); fixed for the workspace's life, an ns-train run's model decides its own",
    )
    parser.add_argument("--steps", type=positive_int, help="iterations (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and ray-sampling seed")
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
    parser.add_argument(
        "--steps", type=positive_int, help="iterations per turn (default: the preset's)"
    )
    parser.add_argument(
        "--edit-rate",
        type=positive_int,
        default=turn_default("edit_rate"),
        help="iterations between image edits",
    )
    parser.add_argument(
        "--edit-count",
        type=positive_int,
        default=turn_default("edit_count"),
        help="views re-edited each time",
    )
    parser.add_argument(
        "--update",
        choices=turn_choices("update"),
        default=turn_default("update"),
        help="dataset update: edit-count views every edit-rate iterations (per_view), or "
        "every view at once every edit-rate iterations (rounds, as instruct-gs2gs)",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=turn_default("lr"),
        help="field learning rate during edits",
    )
    parser.add_argument(
        "--seed", type=int, default=turn_default("seed"), help="diffusion and sampling seed"
    )
    _add_pool_options(parser)
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
    parser.add_argument("--seed", type=int, default=turn_default("seed"), help="the turn's seed")
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="preview this many seeds from --seed on (default 1)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(func=run_preview)


def _add_turn_options(parser: argparse.ArgumentParser) -> None:
    """What a turn and a preview of it share: regions, mode, editor and its settings."""
    parser.add_argument(
        "--edit-query", action="append", default=[], help="region to edit (repeatable)"
    )
    parser.add_argument(
        "--keep-query", action="append", default=[], help="region to keep (repeatable)"
    )
    parser.add_argument("--caption", help="caption for segmentation (default: automatic)")
    _add_mask_options(
        parser,
        "folder with one PNG per view (<image stem>.png, white = edit) instead of segmenting "
        "the queries",
    )
    parser.add_argument(
        "--mode",
        choices=turn_choices("mode"),
        default=turn_default("mode"),
        help="edit3d: condition on the previous turn's renders (Sec. 3.1); in2n: on the "
        "dataset images (the baseline)",
    )
    parser.add_argument(
        "--editor", default=turn_default("editor"), help="ip2p | ip2p-tiny | package.module:Class"
    )
    parser.add_argument(
        "--profile",
        choices=("real", "tiny"),
        default="real",
        help="segmentation models: real weights, or tiny random ones (pipeline check only)",
    )
    parser.add_argument("--parent", help="node to start from (default: head)")
    group = parser.add_argument_group("editor settings (InstructPix2Pix)")
    group.add_argument(
        "--guidance-scale",
        type=float,
        help=_default_help("text guidance weight", "guidance_scale"),
    )
    group.add_argument(
        "--image-guidance-scale",
        type=float,
        help=_default_help("image guidance weight", "image_guidance_scale"),
    )
    group.add_argument(
        "--diffusion-steps",
        type=positive_int,
        help=_default_help("DDIM denoising steps", "diffusion_steps"),
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
        type=positive_int,
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
    try:
        return EditorSettings.from_dict(given)
    except ValueError as error:
        raise CliError(f"editor settings: {error}", "see edit3d edit --help") from error


def _add_render(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render",
        help="render dataset views, or cameras from a JSON file, of a node to PNGs",
    )
    _workspace_arg(parser)
    parser.add_argument("--turn", help="node id (default: head)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    views = parser.add_mutually_exclusive_group()
    views.add_argument(
        "--views", nargs="+", help="dataset view names, e.g. images/frame_00001.png (default: all)"
    )
    views.add_argument(
        "--camera",
        type=Path,
        help="JSON camera(s) in the dataset's world frame: {c2w: 4x4, fx, fy, cx, cy, width, "
        "height, name?} or a list of them",
    )
    parser.add_argument(
        "--width", type=positive_int, help="render width in px (default: the view's)"
    )
    parser.add_argument(
        "--height", type=positive_int, help="render height in px (default: the view's)"
    )
    parser.set_defaults(func=run_render)


def _add_history(subparsers: Any) -> None:
    parser = subparsers.add_parser("history", help="list the workspace's nodes as a tree")
    add_workspace_option(parser)
    parser.set_defaults(func=run_history)


def _add_checkout(subparsers: Any) -> None:
    parser = subparsers.add_parser("checkout", help="make a finished node the head")
    add_workspace_option(parser)
    parser.add_argument("turn_id", help="node id, as `edit3d history` lists them")
    parser.set_defaults(func=run_checkout)


def _add_resume(subparsers: Any) -> None:
    parser = subparsers.add_parser("resume", help="resume an interrupted or cancelled turn")
    _workspace_arg(parser)
    parser.add_argument("turn_id", help="node id, as `edit3d history` lists them")
    parser.add_argument("--editor", help="editor spec (default: the turn's)")
    _add_mask_options(parser, "mask folder, as for `edit3d edit --masks` (default: none)")
    parser.add_argument(
        "--profile",
        choices=("real", "tiny"),
        default="real",
        help="segmentation models: real weights, or tiny random ones (pipeline check only)",
    )
    _add_pool_options(parser)
    parser.set_defaults(func=run_resume)


def _add_pool_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "editor pool (Ray, pip install 'edit3d[ray]'; docs/cluster.md)"
    )
    group.add_argument(
        "--editors",
        nargs="?",
        const=ONE_PER_GPU,
        type=positive_int,
        metavar="N",
        help="edit on N Ray actors while the field trains (no N: one per GPU); "
        "without GPUs, N CPU actors",
    )
    group.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join this Ray cluster (ray://host:10001) instead of starting Ray here",
    )
    group.add_argument(
        "--staleness",
        type=non_negative_int,
        help="edit rounds in flight while the field trains (default: one per editor; "
        "0: wait for every edit, the result of a turn without a pool)",
    )


# --- commands --------------------------------------------------------------------------


def run_train(args: argparse.Namespace) -> int:
    from edit3d.workspace import Workspace

    existing = _recorded(args.workspace)
    _check_train_inputs(args, existing)
    device = resolve_device(args.device)
    if existing is not None:
        workspace = Workspace.open(args.workspace, device=device)
        workspace.recover()
    elif args.nerfstudio_run is not None:
        workspace = Workspace.create(
            args.workspace, nerfstudio_run=args.nerfstudio_run, preset=args.preset, device=device
        )
        print(f"imported {args.nerfstudio_run} as the base of {args.workspace}")
        return 0
    else:
        workspace = Workspace.create(
            args.workspace,
            dataset=args.data,
            preset=args.preset,
            backend=args.backend,
            device=device,
        )
    if device == "cpu":
        print(_cpu_hint(existing["preset"] if existing else args.preset, args.steps))
    with ctrl_c_cancels() as cancel, ProgressBar() as bars:
        record = workspace.train_base(
            steps=args.steps, progress=bars, seed=args.seed, cancel=cancel
        )
    print(f"base trained: {record.steps} iterations in {record.timings.get('train_s', 0):.0f} s")
    return 0


def _recorded(root: Path) -> dict[str, Any] | None:
    """workspace.json of `root` as data, or None where there is none (no torch needed)."""
    import json

    path = root / "workspace.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _check_backend(args: argparse.Namespace, existing: dict[str, Any] | None) -> None:
    """--backend names a registered backend, and one that a new workspace over DATA can use."""
    if args.backend is None:
        return
    from edit3d.field.registry import DEFAULT_BACKEND, backend_names

    names = backend_names()
    if args.backend not in names:
        raise CliError(f"--backend must be one of {names}, got {args.backend!r}")
    recorded = None if existing is None else existing.get("backend", DEFAULT_BACKEND)
    if recorded is not None and recorded != args.backend:
        raise CliError(
            f"workspace {args.workspace} uses the {recorded} backend, not {args.backend}",
            "drop --backend to continue it, or give a new -w",
        )
    if existing is None and args.nerfstudio_run is not None:
        raise CliError("an ns-train run's model decides the backend", "drop --backend")


def _check_train_inputs(args: argparse.Namespace, existing: dict[str, Any] | None) -> None:
    _check_backend(args, existing)
    if existing is not None:
        recorded = existing.get("dataset")
        if args.data is not None and recorded != str(args.data.resolve()):
            raise CliError(
                f"workspace {args.workspace} was made for dataset {recorded}, not {args.data}",
                "give that dataset (or none) to continue it, or a new -w for this one",
            )
        return
    if args.data is None and args.nerfstudio_run is None:
        raise CliError("give DATA (a dataset folder) or --nerfstudio-run CONFIG", "see --help")
    if args.data is not None and args.nerfstudio_run is not None:
        raise CliError("DATA and --nerfstudio-run both given", "give one of them")
    given = args.data if args.data is not None else args.nerfstudio_run
    if not given.exists():
        what = "dataset folder" if args.data is not None else "ns-train config"
        raise CliError(f"{what} {given} does not exist", "check the path")


def _cpu_hint(preset: str, steps: int | None) -> str:
    from edit3d.field.presets import get_preset

    total = steps or get_preset(preset).base_steps
    hours = CPU_SECONDS_PER_STEP[preset] * total / 3600
    tiny_steps = get_preset("tiny").base_steps
    tiny_minutes = CPU_SECONDS_PER_STEP["tiny"] * tiny_steps / 60
    advice = (
        f"; on a CPU `--preset tiny` fits ({tiny_steps} iterations, ~{tiny_minutes:.0f} min, "
        "a pipeline check), real scenes want a CUDA GPU"
        if preset != "tiny"
        else ""
    )
    return f"no CUDA: preset {preset!r} ({total} iterations) takes ~{hours:.1f} h here{advice}"


def run_edit(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    workspace = open_workspace(args.workspace, device=device)
    require_node(workspace, args.parent, "--parent")
    workspace.recover()
    parent = args.parent
    mask_provider = _mask_provider(args, workspace, device, bool(args.caption))
    with _edit_dispatcher(args, args.editor, device) as dispatcher:
        # the editor loads once for all turns, before any render (here, or on the pool)
        editor = None if dispatcher is not None else _editor(args.editor, device)
        _run_edit_turns(args, workspace, parent, editor, mask_provider, dispatcher)
    return 0


def _run_edit_turns(
    args: argparse.Namespace,
    workspace: Any,
    parent: str | None,
    editor: Any,
    mask_provider: Any,
    dispatcher: Any,
) -> str | None:
    from edit3d.editing.turns import TurnSpec

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
            update=args.update,
            lr=args.lr,
            seed=args.seed,
            editor=args.editor,
            segmentation=_segmentation_label(args),
            editor_settings=editor_settings_from_args(args),
        )
        with ctrl_c_cancels() as cancel, ProgressBar() as bars:
            record = workspace.run_turn(
                spec, parent, editor=editor, mask_provider=mask_provider, progress=bars,
                cancel=cancel, dispatcher=dispatcher,
            )  # fmt: skip
        parent = record.id
        print(f"{record.id}: {instruction!r} finished ({_seconds(record.timings)})")
        if args.editor.endswith("-tiny") or args.profile == "tiny":
            print("  (tiny models: a pipeline check, not an edit)")
    return parent


@contextmanager
def _edit_dispatcher(args: argparse.Namespace, editor_spec: str, device: str) -> Iterator[Any]:
    """The editor pool `--editors` / `--ray-address` ask for, or None (edits run here)."""
    if args.editors is None and args.ray_address is None:
        if args.staleness is not None:
            raise CliError("--staleness applies to an editor pool", "add --editors N")
        yield None
        return
    try:
        from edit3d.editing.ray_pool import editor_pool

        with editor_pool(
            editor_spec, editors=None if args.editors == ONE_PER_GPU else args.editors,
            address=args.ray_address,
            staleness=args.staleness, device=device,
        ) as pool:  # fmt: skip
            yield pool
    except (ImportError, ValueError) as error:
        raise CliError(f"--editors: {error}", "see docs/cluster.md") from error


def _editor(spec: str, device: str) -> Any:
    """The editor `spec` names, loaded now; a spec that names none is a one-line error."""
    from edit3d.workspace import load_editor_for

    try:
        return load_editor_for(spec, device)
    except (ValueError, ImportError, AttributeError) as error:
        raise CliError(
            f"--editor {spec}: {error}", "use ip2p, ip2p-tiny or package.module:Factory"
        ) from error


def _mask_provider(
    args: argparse.Namespace, workspace: Any, device: str, caption_given: bool
) -> Any:
    """--masks DIR (every view's file checked now), else ADSS when queries are given (its
    weights checked now): a missing input fails before the pre-renders, not after."""
    queries = bool(getattr(args, "edit_query", None) or getattr(args, "keep_query", None))
    if args.masks is not None:
        return _folder_masks(args.masks, workspace)
    if args.mask_provider is not None:
        return _imported_masks(args.mask_provider, workspace, device)
    if not queries:
        return None
    segmenter = _segmenter(args.profile, device)
    segmenter.require_weights(with_caption=not caption_given)
    return segmenter.mask_provider()


def _folder_masks(folder: Path, workspace: Any) -> Any:
    from edit3d.segmentation.mask_folder import FolderMaskProvider

    if not folder.is_dir():
        raise CliError(f"--masks {folder} is not a folder", "give a folder of PNG masks")
    provider = FolderMaskProvider(folder)
    names = [view.name for view in workspace.load_field().views] if workspace.head else []
    missing = provider.missing(names)
    if missing:
        raise CliError(
            f"--masks {folder} has no mask for {len(missing)} of {len(names)} views "
            f"(e.g. {provider.path_for(missing[0]).name} for {missing[0]})",
            "write one <image stem>.png per dataset view",
        )
    return provider


def _imported_masks(spec: str, workspace: Any, device: str) -> Any:
    from edit3d.segmentation.mask_provider import load_mask_provider

    if workspace.dataset is None:
        raise CliError(
            f"--mask-provider {spec}: this workspace has no dataset folder to give it",
            "use --masks DIR or the queries (ADSS)",
        )
    try:
        return load_mask_provider(spec, dataset_root=workspace.dataset, device=device)
    except (ValueError, ImportError) as error:
        raise CliError(
            f"--mask-provider {spec}: {error}", "give package.module:factory of a mask provider"
        ) from error


def _segmentation_label(args: argparse.Namespace) -> str:
    if args.masks is not None:
        return f"folder:{args.masks.resolve()}"
    if args.mask_provider is not None:
        return f"provider:{args.mask_provider}"
    if args.edit_query or args.keep_query:
        return "adss" if args.profile == "real" else "adss-tiny"
    return ""


def run_preview(args: argparse.Namespace) -> int:
    from edit3d.editing.preview import camera_from_text, write_preview
    from edit3d.editing.turns import TurnSpec
    from edit3d.editing.view_edit import preview_edit

    device = resolve_device(args.device)
    workspace = open_workspace(args.workspace, device=device)
    require_node(workspace, args.parent, "--parent")
    field = workspace.load_field(args.parent)
    try:
        camera = camera_from_text(args.camera, field)
    except ValueError as error:
        raise CliError(
            f"--camera: {error}", "give a view name (see `edit3d render --help`) or a camera JSON"
        ) from error
    settings = editor_settings_from_args(args)
    mask_provider = _mask_provider(args, workspace, device, bool(args.caption))
    editor = _editor(args.editor, device)
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
            segmentation=_segmentation_label(args),
            editor_settings=settings,
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

    workspace = open_workspace(args.workspace, device=resolve_device(args.device))
    require_node(workspace, args.turn, "--turn")
    cameras = _cameras_from_file(args.camera) if args.camera is not None else None
    field = workspace.load_field(args.turn)
    views = cameras if cameras is not None else _named_views(field, args.views)
    args.out.mkdir(parents=True, exist_ok=True)
    for index, view in enumerate(views):
        result = field.render(view, width=args.width, height=args.height)
        pixels = np.round(result.rgb * 255).astype(np.uint8)
        stem = safe_file_name(view.name) if view.name else f"camera_{index:03d}"
        Image.fromarray(pixels).save(args.out / f"{stem}.png")
    print(f"rendered {len(views)} views of {args.turn or workspace.head} to {args.out}")
    return 0


def _named_views(field: Any, names: list[str] | None) -> list[Any]:
    known = [view.name for view in field.views]
    unknown = [name for name in names or () if name not in known]
    if unknown:
        examples = ", ".join(known[:3])
        raise CliError(
            f"--views {unknown[0]!r} is not a view of this scene",
            f"view names are dataset file paths as in transforms.json, e.g. {examples} "
            f"({len(known)} views)",
        )
    return [field.view(name) for name in names] if names else list(field.views)


def _cameras_from_file(path: Path) -> list[Any]:
    from edit3d.scene.cameras import cameras_from_json

    try:
        return cameras_from_json(path)
    except (OSError, ValueError) as error:
        raise CliError(
            f"--camera {path}: {error}",
            "give JSON with c2w (4x4), fx, fy, cx, cy, width, height per camera",
        ) from error


def run_history(args: argparse.Namespace) -> int:
    recorded = _recorded(require_workspace(args.workspace))
    for line in history_lines(recorded["turns"], recorded.get("head")):
        print(line)
    return 0


def run_checkout(args: argparse.Namespace) -> int:
    workspace = open_workspace(args.workspace)
    require_node(workspace, args.turn_id, "node")
    status = workspace.turn(args.turn_id).status
    if status != "finished":
        raise CliError(
            f"node {args.turn_id} is {status}, not finished",
            f"resume it with `edit3d resume -w {args.workspace} {args.turn_id}` first",
        )
    workspace.checkout(args.turn_id)
    print(f"head is now {args.turn_id}; the next turn branches from it")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    workspace = open_workspace(args.workspace, device=device)
    require_node(workspace, args.turn_id, "node")
    workspace.recover()
    spec = workspace.turn(args.turn_id).turn_spec
    caption_given = spec is not None and bool(spec.caption)
    if args.masks is not None:
        mask_provider = _folder_masks(args.masks, workspace)
    elif args.mask_provider is not None:
        mask_provider = _imported_masks(args.mask_provider, workspace, device)
    elif spec is not None and (spec.edit_queries or spec.keep_queries):
        segmenter = _segmenter(args.profile, device)
        segmenter.require_weights(with_caption=not caption_given)
        mask_provider = segmenter.mask_provider()
    else:
        mask_provider = None
    editor_spec = args.editor or (spec.editor if spec is not None else "ip2p")
    with _edit_dispatcher(args, editor_spec, device) as dispatcher:
        editor = _editor(args.editor, device) if args.editor and dispatcher is None else None
        with ctrl_c_cancels() as cancel, ProgressBar() as bars:
            record = workspace.resume_turn(
                args.turn_id, editor=editor, mask_provider=mask_provider, progress=bars,
                cancel=cancel, dispatcher=dispatcher,
            )  # fmt: skip
    print(f"{record.id} finished ({_seconds(record.timings)})")
    return 0


# --- helpers ---------------------------------------------------------------------------


def history_lines(turns: list[dict[str, Any]], head: str | None) -> list[str]:
    """The history (workspace.json's node records) as an indented tree, head marked '*':
    id, kind, status, time, instruction, mode and the regions (queries or masks)."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for record in turns:
        children.setdefault(record.get("parent"), []).append(record)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for record in children.get(parent, []):
            mark = "*" if record["id"] == head else " "
            lines.append(
                f"{mark} {'  ' * depth}{record['id']:<10} {record['kind']:<6} "
                f"{record['status']:<11} {_seconds(record.get('timings') or {}):>8}"
                f"{_turn_summary(record)}"
            )
            walk(record["id"], depth + 1)

    walk(None, 0)
    return lines


def _turn_summary(record: dict[str, Any]) -> str:
    if record.get("kind") != "edit":
        return ""
    spec = record.get("spec") or {}
    parts = [f"  {spec.get('instruction', '')!r} [{spec.get('mode', 'edit3d')}]"]
    if spec.get("edit_queries"):
        parts.append(f"edit: {', '.join(spec['edit_queries'])}")
    if spec.get("keep_queries"):
        parts.append(f"keep: {', '.join(spec['keep_queries'])}")
    if spec.get("segmentation"):
        parts.append(f"masks: {spec['segmentation']}")
    settings = EditorSettings.from_dict(spec.get("editor_settings"))
    parts.append(f"seed {spec.get('seed', 0)} · {settings.summary()}")
    return "  ".join(parts)


def _seconds(timings: dict[str, float]) -> str:
    total = timings.get("total_s")
    return f"{total:.0f} s" if total is not None else "-"


def _segmenter(profile: str, device: str) -> Any:
    from edit3d.segmentation.adss import AdssSegmenter

    return AdssSegmenter(profile=profile, device=device)


class ProgressBar:
    """A progress callback drawing one tqdm bar for the whole job: its share done (never
    restarting between phases), the phase beside it, the job's ETA and the latest loss."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file
        self._bar: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(
                total=1.0, file=self._file, bar_format="{percentage:3.0f}%|{bar}| {desc}{postfix}"
            )
        self._bar.n = max(self._bar.n, event.job_fraction)
        counted = f" {event.step}/{event.total}" if event.total else ""
        self._bar.set_description_str(f"{event.phase}{counted}", refresh=False)
        postfix = {}
        if event.eta_s is not None:
            postfix["eta"] = _format_seconds(event.eta_s)
        if event.loss is not None:
            postfix["loss"] = f"{event.loss:.4f}"
        if event.extra.get("edited_view"):
            postfix["edited"] = str(event.extra["edited_view"])
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
