"""The `edit3d` command line.

Each feature module contributes its subcommands through a function
`add_commands(subparsers) -> None` that registers parsers whose `func` attribute takes the
parsed namespace and returns an exit code. Heavy imports stay inside those functions.

argparse, not tyro: the commands are a tree contributed by seven modules whose options
are a user's view (paths, names, a few numbers), not the config dataclasses' fields, and
building the parser must stay free of torch so that `--help`, `history` and `models list`
answer at once; tyro would have to import those dataclasses' modules to read them.

Expected failures (`CliError`, missing weights, a bad value a library rejects at an entry
point) print one line, `edit3d CMD: error: <problem>; <fix>`, and exit 2; `--debug` shows
the traceback instead. Ctrl-C cancels cooperatively (exit 130).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence

from edit3d import __version__
from edit3d.cli_options import CliError, Parser

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

EXIT_USAGE = 2
EXIT_CANCELLED = 130


def build_parser() -> Parser:
    parser = Parser(
        prog="edit3d",
        description="Edit captured 3D scenes with words: multi-turn, attention-driven (Edit3D).",
    )
    parser.add_argument("--version", action="version", version=f"edit3d {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def quiet_library_warnings() -> None:
    """Library warnings (torch/nerfstudio FutureWarnings, per-iteration UserWarnings) are
    for developers; a user of the command line sees ours only."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for module in ("torch", "nerfstudio", "diffusers", "transformers", "torchvision", "timm"):
        warnings.filterwarnings("ignore", category=UserWarning, module=rf"{module}(\.|$)")


def expected_failure(error: BaseException) -> str | None:
    """The one-line message for an expected failure, None for a defect (traceback)."""
    from edit3d.models.registry import ModelNotAvailable

    if isinstance(error, CliError):
        return str(error)
    if isinstance(error, ModelNotAvailable):
        return error.one_line
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.debug:
        quiet_library_warnings()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("edit3d: aborted", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:
        from edit3d.progress import Cancelled

        if isinstance(error, Cancelled):
            print(
                f"edit3d {args.command}: cancelled; the checkpoint is saved: `edit3d resume "
                "-w W NODE` continues a turn, `edit3d train -w W` the base",
                file=sys.stderr,
            )
            return EXIT_CANCELLED
        message = expected_failure(error)
        if message is None or args.debug:
            raise
        print(f"edit3d {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
