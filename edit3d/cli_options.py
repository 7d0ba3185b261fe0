"""The `edit3d` command line's shared pieces: parser and help style, expected failures,
options several subcommand modules use, and Ctrl-C as a cooperative cancel.

Kept apart from `edit3d.cli` so that command modules can use them without importing the
command line itself; nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

WORKSPACE_FILE = "workspace.json"
Number = TypeVar("Number", int, float)


class CliError(Exception):
    """An expected failure: printed as one line naming the problem and the fix, exit 2."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}; {fix}" if fix else problem)


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help unless the help already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default in (argparse.SUPPRESS, [])
        if "default" in text or unset:  # (identity: a default of 0 is shown, False is not)
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors and shown defaults (every subparser inherits it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _checked_number(
    convert: Callable[[str], Number], kind: str, accepts: Callable[[Number], bool], bound: str
) -> Callable[[str], Number]:
    """An argparse type: `convert`s the text (else "must be `kind`") and `accepts` the value
    (else "must be `bound`"), each error naming what was given."""

    def parse(text: str) -> Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


positive_int = _checked_number(int, "a whole number", lambda v: v >= 1, "at least 1")
"""argparse type: an integer >= 1."""
non_negative_int = _checked_number(int, "a whole number", lambda v: v >= 0, "0 or more")
"""argparse type: an integer >= 0."""
positive_float = _checked_number(
    float, "a number", lambda v: 0 < v < float("inf"), "greater than 0"
)
"""argparse type: a finite number > 0."""
fraction = _checked_number(float, "a number", lambda v: 0.0 <= v <= 1.0, "between 0 and 1")
"""argparse type: a number in [0, 1]."""


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
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cuda, cuda:1, cpu (default: cuda "
        "if torch sees a GPU, else cpu)"
    )  # fmt: skip


def resolve_device(requested: str | None) -> str:
    """``requested`` when given (a CUDA device must exist), else "cuda" if torch sees a GPU,
    else "cpu"."""
    import torch

    if not requested:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(
            f"--device {requested}: torch sees no CUDA GPU on this machine",
            "leave --device out to run on the CPU, or install torch with CUDA support",
        )
    return requested


def require_workspace(root: Path) -> Path:
    """`root` if it holds a workspace, else a CliError that says how to make one."""
    if not (root / WORKSPACE_FILE).is_file():
        what = "does not exist" if not root.exists() else f"has no {WORKSPACE_FILE}"
        raise CliError(
            f"workspace {root} {what}",
            f"create one with `edit3d train DATA -w {root}` or give the right -w",
        )
    return root


def open_workspace(root: Path, *, device: str = "cpu") -> Any:
    """`Workspace.open(root)` after `require_workspace`."""
    from edit3d.workspace import Workspace

    return Workspace.open(require_workspace(root), device=device)


def require_node(workspace: Any, node_id: str | None, option: str) -> None:
    """A CliError listing the workspace's nodes when `node_id` is not one of them."""
    if node_id is None:
        return
    known = [record.id for record in workspace.turns]
    if node_id not in known:
        raise CliError(
            f"{option} {node_id!r} is not a node of {workspace.root}",
            f"choose one of: {', '.join(known) or 'none yet (train the base first)'} "
            "(`edit3d history` lists them)",
        )


def require_models(names: list[str]) -> None:
    """ModelNotAvailable for the first of `names` without real weights (nothing loaded):
    commands call this before their first expensive step."""
    from edit3d.models.registry import resolve_path

    for name in names:
        resolve_path(name)


@contextlib.contextmanager
def ctrl_c_cancels() -> Iterator[Any]:
    """A CancelToken that the first Ctrl-C sets (the running step finishes, a checkpoint is
    saved, `Cancelled` is raised); a second Ctrl-C raises KeyboardInterrupt at once."""
    from edit3d.progress import CancelToken

    token = CancelToken()

    def on_interrupt(_signum: int, _frame: object) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        print(
            "\nedit3d: cancelling after the current step and saving a checkpoint "
            "(Ctrl-C again to abort at once)",
            file=sys.stderr,
        )

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread: no signal handling, no cancel by Ctrl-C
        yield token
        return
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)
