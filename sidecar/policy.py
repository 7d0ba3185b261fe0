"""What the operator allows: which editors may run and which folders datasets come from.

Both lists come from the sidecar's own command line (`--allow-editor`, `--data-root`), never
from a client message: a request names an editor or a path, this module decides whether it
is one the operator allowed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from edit3d.field.catalogue import DEFAULT_BACKEND, builtin_backend_names, preset_names
from sidecar.errors import SidecarError

REGISTERED_EDITORS: tuple[str, ...] = ("ip2p", "ip2p-tiny")
"""Editors every sidecar may run: the ones edit3d builds by name."""
UPLOADS_DIR = "uploads"
"""Name of a session's upload folder (always an allowed data root)."""
PARTIAL_DIR = ".partial"
"""Folder of unfinished uploads inside a session's uploads (never a data source)."""


def check_editor(spec: object, allowed: Sequence[str]) -> str:
    """`spec` if it is a registered editor or one the operator allowed with --allow-editor."""
    if isinstance(spec, str) and (spec in REGISTERED_EDITORS or spec in allowed):
        return spec
    extra = f"; allowed by this sidecar: {sorted(allowed)}" if allowed else ""
    raise SidecarError(
        "not_allowed",
        f"editor {spec!r} is not allowed: use one of {list(REGISTERED_EDITORS)}{extra} "
        "(the operator adds import paths with edit3d-sidecar --allow-editor pkg.mod:Factory)",
    )


def check_backend(name: str | None) -> str | None:
    """`name` if it is a field backend edit3d ships (None: edit3d's default), checked before
    anything is made; the names come from edit3d's catalogue, which does not load torch."""
    names = builtin_backend_names()
    if name is not None and name not in names:
        raise SidecarError("bad_request", f"backend must be one of {names}, got {name!r}")
    return name


def check_preset(name: str | None, backend: str | None = None) -> str | None:
    """`name` if `backend` (None: edit3d's default) has a field preset of that name (None:
    the default preset), checked before anything is made."""
    names = preset_names(backend or DEFAULT_BACKEND)
    if name is not None and name not in names:
        raise SidecarError("bad_request", f"preset must be one of {names}, got {name!r}")
    return name


def resolve_source_path(
    text: str, field_name: str, data_roots: Sequence[Path], sessions_root: Path
) -> Path:
    """The real path of an existing dataset or run inside an allowed root.

    Allowed: anything under an operator's `--data-root` and any session's uploads in the
    work directory. The path is resolved (symlinks followed, `..` collapsed) before it is
    checked, so a link or `..` cannot leave a root. A relative path is looked up under each
    data root in turn. "Outside every root" and "does not exist" give the same `not_found`
    answer, so a client cannot probe which paths exist on the machine.
    """
    candidates = [Path(text)] if os.path.isabs(text) else [root / text for root in data_roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if _inside_allowed_root(real, data_roots, sessions_root) and real.exists():
            return real
    raise SidecarError(
        "not_found",
        f"{field_name} {text!r} is not an existing path under a data root this sidecar "
        "allows (its uploads, or a folder the operator named with --data-root)",
    )


def _inside_allowed_root(real: Path, data_roots: Sequence[Path], sessions_root: Path) -> bool:
    if any(_is_within(real, Path(os.path.realpath(root))) for root in data_roots):
        return True
    sessions = Path(os.path.realpath(sessions_root))
    if not _is_within(real, sessions):
        return False
    parts = real.relative_to(sessions).parts
    # <session id>/uploads/<something that is not an unfinished upload>
    return len(parts) >= 3 and parts[1] == UPLOADS_DIR and parts[2] != PARTIAL_DIR


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
