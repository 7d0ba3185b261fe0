"""`edit3d eval clip` (paper Tab. 1) and `edit3d timings` (paper Tab. 2)."""

from __future__ import annotations

import argparse
from typing import Any

from edit3d.cli_options import (
    add_device_option,
    add_workspace_option,
    eval_subcommands,
    resolve_device,
)

CLIP_CHOICES = ("clip-vit-l14", "clip-vit-b32", "tiny")


def add_commands(subparsers: Any) -> None:
    _add_eval_clip(eval_subcommands(subparsers))
    parser = subparsers.add_parser("timings", help="time per phase of a workspace (Tab. 2)")
    add_workspace_option(parser)
    parser.add_argument("--hardware", default="", help="what ran it, printed with the table")
    parser.set_defaults(func=run_timings)


def _add_eval_clip(eval_subcommands: Any) -> None:
    parser = eval_subcommands.add_parser(
        "clip",
        help="CLIP directional score between consecutive turns (Tab. 1)",
        description="Render the same views from every node of a chain (base → … → TURN) and "
        "score each consecutive pair: CLIP directional similarity with the captions, and each "
        "node's CLIP text-image similarity. One caption per node, base first.",
    )
    add_workspace_option(parser)
    parser.add_argument(
        "--captions", nargs="+", required=True, help="caption of each node, base first"
    )
    parser.add_argument(
        "--turn", help="last node of the chain (default: head; the chain is its lineage)"
    )
    parser.add_argument(
        "--nodes", nargs="+", help="explicit node ids instead of a lineage (e.g. skip refine)"
    )
    parser.add_argument("--views", type=int, default=100, help="rendered views (paper: 100)")
    parser.add_argument("--render-long-side", type=int, help="render size (default: dataset)")
    parser.add_argument(
        "--clip", choices=CLIP_CHOICES, default="clip-vit-l14",
        help="CLIP weights (tiny: random, pipeline check only)",
    )  # fmt: skip
    add_device_option(parser)
    parser.set_defaults(func=run_eval_clip)


def _chain(workspace: Any, args: argparse.Namespace) -> list[str]:
    """--nodes as given, else the lineage of --turn without refine nodes (a refine node
    changes sharpness, not content: it has no caption of its own)."""
    if args.nodes:
        return list(args.nodes)
    return [record.id for record in workspace.lineage(args.turn) if record.kind != "refine"]


def run_eval_clip(args: argparse.Namespace) -> int:
    from edit3d.metrics.evaluate import evaluate_chain, evaluation_views, format_clip_table
    from edit3d.models.registry import load_model
    from edit3d.workspace import Workspace

    device = resolve_device(args.device)
    workspace = Workspace.open(args.workspace, device=device)
    nodes = _chain(workspace, args)
    if len(nodes) != len(args.captions):
        raise SystemExit(
            f"edit3d eval clip: --captions gives {len(args.captions)} captions for "
            f"{len(nodes)} nodes ({', '.join(nodes)})"
        )
    if args.clip == "tiny":
        clip = load_model("clip-vit-l14", "tiny", device=device)
    else:
        clip = load_model(args.clip, "real", device=device)
    fields = [workspace.load_field(node) for node in nodes]
    views = evaluation_views(fields[0].views, args.views)
    result = evaluate_chain(
        fields, nodes, args.captions, clip, views, render_long_side=args.render_long_side
    )
    print(format_clip_table(result))
    return 0


def run_timings(args: argparse.Namespace) -> int:
    from edit3d.metrics.timings import format_timings_table, phase_timings
    from edit3d.workspace import Workspace

    workspace = Workspace.open(args.workspace)
    print(format_timings_table(phase_timings(workspace.turns), hardware=args.hardware))
    return 0
