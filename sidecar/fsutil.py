"""Small filesystem helpers: atomic JSON writes and safe relative paths."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path, PurePosixPath

MAX_RELATIVE_PATH_CHARS = 1024
"""Longest relative path a client may name (upload destinations, dataset sub-folders)."""


class UnsafePathError(ValueError):
    """A client-supplied path that could leave its directory."""


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old or the new file, whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: no stray temp file stays behind
        raise
    fsync_directory(path.parent)


def atomic_write_json(path: Path, data: object) -> None:
    """Atomically write `data` as indented JSON (tmp + fsync + rename)."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False)
    atomic_write_bytes(path, text.encode("utf-8") + b"\n")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) has no space left."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def read_json(path: Path) -> object:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def safe_relative_path(text: str) -> PurePosixPath:
    """Validate a client-supplied relative POSIX path.

    Rejects what could escape or confuse the destination directory: absolute paths, `..`,
    empty or `.` components, backslashes (a Windows separator would be a literal character
    here), NUL and other control characters, and over-long names.
    """
    if not isinstance(text, str) or not text:
        raise UnsafePathError(f"path must be a non-empty string, got {text!r}")
    if len(text) > MAX_RELATIVE_PATH_CHARS:
        raise UnsafePathError(f"path is longer than {MAX_RELATIVE_PATH_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise UnsafePathError(f"path contains a control or NUL character: {text!r}")
    if "\\" in text:
        raise UnsafePathError(f"path must use '/' separators, got {text!r}")
    if text.startswith("/"):
        raise UnsafePathError(f"path must be relative, got {text!r}")
    parts = text.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(f"path has an empty, '.' or '..' component: {text!r}")
    return PurePosixPath(*parts)


def ensure_directory_without_symlinks(base: Path, relative: PurePosixPath) -> Path:
    """Create `base/relative` (a directory) refusing to pass through any symlink.

    Each component is checked with lstat, so a symlink planted inside `base` cannot redirect
    a write outside it. Returns the directory.
    """
    current = Path(base)
    for part in relative.parts:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o700)
            continue
        if stat.S_ISLNK(info.st_mode):
            raise UnsafePathError(f"destination passes through a symlink: {part!r}")
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafePathError(f"destination component is not a directory: {part!r}")
    return current
