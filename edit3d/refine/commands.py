"""`edit3d refine`: the super-resolution fine-tune (paper Sec. 3.3) as a workspace node."""

from __future__ import annotations

import argparse
from typing import Any

from edit3d.cli_options import (
    add_device_option,
    add_workspace_option,
    ctrl_c_cancels,
    open_workspace,
    positive_float,
    positive_int,
    require_models,
    require_node,
    resolve_device,
)


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "refine",
        help="super-resolution fine-tune of a turn (Real-ESRGAN + GFPGAN targets)",
        description="Render the training views of a finished node (default: head), upscale "
        "them (Real-ESRGAN x4plus, GFPGAN v1.4 on faces) and fine-tune the field on them. "
        "The result is a new 'refine' node and the new head.",
    )
    add_workspace_option(parser)
    parser.add_argument("--parent", help="node to refine (default: head)")
    parser.add_argument(
        "--steps", type=positive_int, default=10_000, help="iterations (paper: 10k)"
    )
    parser.add_argument("--lr", type=positive_float, default=0.0025, help="NeRF learning rate")
    parser.add_argument("--scale", type=positive_int, default=4, help="target size / render size")
    parser.add_argument(
        "--target-long-side", type=positive_int, help="cap on the targets' longer side in px"
    )
    parser.add_argument(
        "--render-long-side", type=positive_int, help="render size in px (default: training)"
    )
    parser.add_argument("--no-faces", action="store_true", help="Real-ESRGAN only, no GFPGAN")
    parser.add_argument(
        "--profile",
        choices=("real", "tiny"),
        default="real",
        help="real: published weights; tiny: random miniatures (pipeline check only)",
    )
    add_device_option(parser)
    parser.set_defaults(func=run_refine_command)


def run_refine_command(args: argparse.Namespace) -> int:
    from edit3d.editing.commands import ProgressBar
    from edit3d.refine.finetune import RefineConfig
    from edit3d.refine.node import run_refine

    if args.profile == "real":
        faces = [] if args.no_faces else ["gfpgan-v1.4", "yunet-face"]
        require_models(["realesrgan-x4plus", *faces])
    config = RefineConfig(
        steps=args.steps,
        lr=args.lr,
        scale=args.scale,
        target_long_side=args.target_long_side,
        render_long_side=args.render_long_side,
        faces=not args.no_faces,
    )
    workspace = open_workspace(args.workspace, device=resolve_device(args.device))
    require_node(workspace, args.parent, "--parent")
    with ctrl_c_cancels() as cancel, ProgressBar() as bars:
        record = run_refine(
            workspace, args.parent, config, profile=args.profile, progress=bars, cancel=cancel
        )
    note = (
        " (tiny SR networks: pipeline check, not an enhancement)" if args.profile == "tiny" else ""
    )
    seconds = {key: record.timings.get(key, 0.0) for key in ("total_s", "upscale_s", "train_s")}
    print(
        f"{record.id}: refined {record.parent} in {seconds['total_s']:.0f} s (upscale "
        f"{seconds['upscale_s']:.0f} s, train {seconds['train_s']:.0f} s, "
        f"{int(record.timings.get('faces', 0))} faces){note}"
    )
    return 0
