"""Options and groups that several `edit3d` subcommand modules share.

Kept apart from `edit3d.cli` so that command modules can use them without importing the
command line itself; nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def eval_subcommands(subparsers: Any) -> Any:
    """The `edit3d eval` group's subcommands, created by whichever module asks first."""
    existing = subparsers.choices.get("eval")
    if existing is not None:
        for action in existing._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
    group = subparsers.add_parser("eval", help="evaluate parts of the method against references")
    return group.add_subparsers(dest="eval_command", required=True, metavar="WHAT")


def add_workspace_option(parser: Any, *, required: bool = True) -> None:
    """`--workspace/-w FOLDER` on ``parser`` (or on a mutually exclusive group)."""
    parser.add_argument("--workspace", "-w", type=Path, required=required, help="workspace folder")


def add_device_option(parser: Any) -> None:
    """`--device` whose default (None) means CUDA when present; see :func:`resolve_device`."""
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")


def resolve_device(requested: str | None) -> str:
    """``requested`` when given, otherwise "cuda" if torch sees a GPU, else "cpu"."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
