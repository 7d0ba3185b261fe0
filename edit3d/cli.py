"""The `edit3d` command line.

Each feature module contributes its subcommands through a function
`add_commands(subparsers) -> None` that registers parsers whose `func` attribute takes the
parsed namespace and returns an exit code. Heavy imports stay inside those functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "edit3d.scene.commands",
    "edit3d.models.commands",
    "edit3d.segmentation.commands",
    "edit3d.editing.commands",
    "edit3d.refine.commands",
    "edit3d.export.commands",
    "edit3d.metrics.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edit3d",
        description="Edit captured 3D scenes with words: multi-turn, attention-driven (Edit3D).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("edit3d: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
