"""Serving a session's exported files in chunks (download.chunk), so a user of a remote
sidecar gets them: only regular files under the session's exports/ folder, never through
a symbolic link, each chunk sent with the whole file's size and SHA-256."""

from __future__ import annotations

import hashlib
import os
import stat
from collections import OrderedDict
from pathlib import Path

from sidecar.errors import SidecarError

EXPORTS = "exports"
_DIGESTS: OrderedDict[tuple[str, int, int], str] = OrderedDict()
"""SHA-256 by (path, size, mtime_ns): a file read in many chunks is hashed once."""
MAX_DIGESTS = 64


def export_file(session_dir: Path, relative: str) -> Path:
    """The exported file `relative` ("exports/..."), refusing anything outside exports/,
    links and non-regular files (SidecarError unsafe_path / not_found)."""
    parts = Path(relative).parts
    if len(parts) < 2 or parts[0] != EXPORTS or any(p in ("", ".", "..") for p in parts):
        raise SidecarError("unsafe_path", f"{relative!r} is not a file under {EXPORTS}/")
    path = session_dir
    for part in parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise SidecarError("not_found", f"no exported file {relative!r}") from None
        if stat.S_ISLNK(mode):
            raise SidecarError("unsafe_path", f"{relative!r} goes through a symbolic link")
    if not stat.S_ISREG(mode):
        raise SidecarError("not_found", f"{relative!r} is not a file")
    return path


def read_chunk(path: Path, offset: int, length: int) -> tuple[bytes, int, str]:
    """(bytes at offset, file size, SHA-256 of the whole file)."""
    info = path.stat()
    if offset > info.st_size:
        raise SidecarError("bad_offset", f"offset {offset} is past the end ({info.st_size} B)")
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    return data, info.st_size, _digest(path, info.st_size, info.st_mtime_ns)


def _digest(path: Path, size: int, mtime_ns: int) -> str:
    key = (str(path), size, mtime_ns)
    if key in _DIGESTS:
        _DIGESTS.move_to_end(key)
        return _DIGESTS[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    _DIGESTS[key] = digest.hexdigest()
    while len(_DIGESTS) > MAX_DIGESTS:
        _DIGESTS.popitem(last=False)
    return _DIGESTS[key]
