"""`edit3d eval clip` (paper Tab. 1) and `edit3d timings` (paper Tab. 2)."""

from __future__ import annotations

import argparse
from typing import Any

from edit3d.cli_options import (
    WORKSPACE_FILE,
    CliError,
    add_device_option,
    add_workspace_option,
    eval_subcommands,
    open_workspace,
    positive_int,
    require_models,
    require_workspace,
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
    parser.add_argument(
        "--views", type=positive_int, default=100, help="rendered views (paper: 100)"
    )
    parser.add_argument(
        "--render-long-side", type=positive_int, help="render size (default: dataset)"
    )
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

    device = resolve_device(args.device)
    if args.clip != "tiny":
        require_models([args.clip])
    workspace = open_workspace(args.workspace, device=device)
    nodes = _chain(workspace, args)
    if len(nodes) != len(args.captions):
        raise CliError(
            f"--captions gives {len(args.captions)} captions for {len(nodes)} nodes "
            f"({', '.join(nodes)})",
            "give one caption per node, base first",
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
    import json

    from edit3d.metrics.timings import format_phase_split, format_timings_table, phase_timings

    recorded = json.loads((require_workspace(args.workspace) / WORKSPACE_FILE).read_text())
    records = recorded["turns"]
    print(format_timings_table(phase_timings(records), hardware=args.hardware))
    print()
    print(format_phase_split(records))
    return 0
