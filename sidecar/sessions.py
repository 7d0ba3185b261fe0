"""Sessions on disk: one captured scene being edited, with its history of jobs.

Layout of `WORKDIR/sessions/<id>/`::

    session.json        sidecar metadata (atomic writes): name, created, source, job history
    workspace/          the edit3d Workspace (base checkpoint, turns/<id>/..., workspace.json)
    uploads/            files a remote client uploaded (the only place uploads are written)
    uploads/.partial/   uploads in progress (removed on commit, abort or restart)
    exports/            files written by export jobs

The Workspace itself (turns, parents, checkpoints) is edit3d's; this module only keeps the
sidecar's own metadata next to it and never rewrites what the Workspace owns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edit3d.field.catalogue import DEFAULT_PRESET
from sidecar.errors import SidecarError
from sidecar.fsutil import (
    UnsafePathError,
    atomic_write_json,
    ensure_directory_without_symlinks,
    is_disk_full,
    read_json,
    safe_relative_path,
)

SESSION_FORMAT = 1
"""Version of session.json's layout."""

_SESSION_ID = re.compile(r"^[0-9a-f]{12}$")
_PARTIAL_DIR = ".partial"
_MAX_JOB_HISTORY = 500

SourceKind = Literal["dataset", "nerfstudio_run", "upload"]


@dataclass(frozen=True)
class SessionLimits:
    """Bounds on what one client may store in a session."""

    max_upload_file_bytes: int = 4 * 1024**3
    """Largest single uploaded file."""
    max_upload_session_bytes: int = 32 * 1024**3
    """Total bytes of uploads (finished + in progress) in one session."""
    max_open_uploads: int = 64
    """Uploads in progress at once, per session."""


@dataclass
class Upload:
    """One file being uploaded in chunks."""

    upload_id: str
    session_id: str
    relative_path: str
    size: int
    sha256: str
    partial: Path
    received: int = 0
    hasher: object = field(default_factory=hashlib.sha256)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_session_id(session_id: object) -> str:
    """Validate a session id from a client (it becomes a directory name)."""
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise SidecarError("bad_request", f"session_id must be 12 hex digits, got {session_id!r}")
    return session_id


class SessionStore:
    """All sessions under one work directory. Thread-safe for metadata updates."""

    def __init__(self, workdir: Path, limits: SessionLimits | None = None) -> None:
        self.root = Path(workdir) / "sessions"
        self.root.mkdir(parents=True, exist_ok=True)
        self.limits = limits or SessionLimits()
        self._lock = threading.RLock()
        self._uploads: dict[str, Upload] = {}
        self._created: dict[str, float] | None = None
        """Session id → creation time, read from disk once, then kept up to date (pages of
        `session.list` and the handshake must not read every session.json)."""

    # ----- paths -------------------------------------------------------------------------
    def session_dir(self, session_id: str) -> Path:
        path = self.root / check_session_id(session_id)
        if not (path / "session.json").is_file():
            raise SidecarError("not_found", f"no session {session_id!r}")
        return path

    def workspace_dir(self, session_id: str) -> Path:
        return self.session_dir(session_id) / "workspace"

    def uploads_dir(self, session_id: str) -> Path:
        return self.session_dir(session_id) / "uploads"

    def exports_dir(self, session_id: str) -> Path:
        path = self.session_dir(session_id) / "exports"
        path.mkdir(exist_ok=True)
        return path

    # ----- metadata ----------------------------------------------------------------------
    def create(
        self,
        name: str,
        *,
        source: SourceKind,
        source_path: str | None = None,
        preset: str | None = None,
        backend: str | None = None,
        editor_pool: dict | None = None,
    ) -> dict:
        """Make a new session directory and its session.json; returns the metadata.
        `preset` None is edit3d's default preset, stored by name; `backend` None stays None
        (edit3d's default, named once the workspace exists); `editor_pool` ({"editors",
        "staleness"}) makes its turns edit on Ray actors."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise SidecarError("bad_request", f"name must be 1-200 characters, got {name!r}")
        session_id = uuid.uuid4().hex[:12]
        path = self.root / session_id
        meta = {
            "format": SESSION_FORMAT,
            "id": session_id,
            "name": name.strip(),
            "created": _now_iso(),
            "created_ts": time.time(),
            "source": {"kind": source, "path": source_path},
            "preset": preset or DEFAULT_PRESET,
            "backend": backend,
            "editor_pool": editor_pool,
            "workspace_ready": False,
            "jobs": [],
        }
        try:
            path.mkdir(mode=0o700)
            (path / "uploads" / _PARTIAL_DIR).mkdir(parents=True, mode=0o700)
            (path / "exports").mkdir(mode=0o700)
            atomic_write_json(path / "session.json", meta)
        except OSError as exc:
            shutil.rmtree(path, ignore_errors=True)  # no half session that never lists
            if is_disk_full(exc):
                raise SidecarError("no_space", f"no space left to create a session: {exc}") from exc
            raise
        with self._lock:
            if self._created is not None:
                self._created[session_id] = meta["created_ts"]
        return meta

    def read(self, session_id: str) -> dict:
        meta = read_json(self.session_dir(session_id) / "session.json")
        if not isinstance(meta, dict):
            raise SidecarError("internal", f"session {session_id}: session.json is not a map")
        return meta

    def update(self, session_id: str, **changes: object) -> dict:
        """Read-modify-write session.json atomically under the store's lock."""
        with self._lock:
            meta = self.read(session_id)
            meta.update(changes)
            atomic_write_json(self.session_dir(session_id) / "session.json", meta)
            return meta

    def record_job(self, session_id: str, record: dict, **changes: object) -> None:
        """Add or replace (by job id) a job in the session's history (+ other changes)."""
        with self._lock:
            try:
                meta = self.read(session_id)
            except SidecarError:
                return  # deleted meanwhile
            jobs = [job for job in meta.get("jobs", []) if job.get("id") != record.get("id")]
            jobs.append(record)
            meta["jobs"] = jobs[-_MAX_JOB_HISTORY:]
            meta.update(changes)
            atomic_write_json(self.session_dir(session_id) / "session.json", meta)

    def list(self) -> list[dict]:
        """Metadata of every readable session, oldest first (job history left out)."""
        sessions = []
        for path in sorted(self.root.iterdir()):
            if not _SESSION_ID.match(path.name) or not (path / "session.json").is_file():
                continue
            try:
                meta = self.read(path.name)
            except (OSError, ValueError, SidecarError):
                continue
            sessions.append({k: v for k, v in meta.items() if k != "jobs"})
        sessions.sort(key=lambda meta: float(meta.get("created_ts", 0.0)))
        return sessions

    def page(self, after: str | None, limit: int) -> tuple[list[str], str | None, int]:
        """One page of session ids, newest first: (ids, cursor of the next page or None,
        number of sessions). `after` is the last id of the previous page."""
        with self._lock:
            if self._created is None:
                self._created = {m["id"]: float(m.get("created_ts", 0.0)) for m in self.list()}
            created = dict(self._created)
        order = sorted(created, key=lambda sid: (-created[sid], sid))
        start = 0
        if after is not None:
            if after not in created:
                raise SidecarError("not_found", f"cursor {after!r} names no session (deleted "
                                   "meanwhile?): list again from the first page")
            start = order.index(after) + 1
        ids = order[start:start + limit]
        more = start + limit < len(order)
        return ids, ids[-1] if more and ids else None, len(order)

    def delete(self, session_id: str) -> None:
        """Remove a session and everything in it (the caller checks no job uses it)."""
        path = self.session_dir(session_id)
        with self._lock:
            if self._created is not None:
                self._created.pop(session_id, None)
            for upload_id in [u.upload_id for u in self._uploads.values()
                              if u.session_id == session_id]:
                self._uploads.pop(upload_id, None)
            # Rename first so a crash mid-delete never leaves a half session that lists.
            doomed = self.root / f".deleting-{session_id}-{uuid.uuid4().hex[:6]}"
            os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def clean_stale_state(self) -> None:
        """On start: drop unfinished uploads and half-deleted sessions from a previous run."""
        for path in self.root.iterdir():
            if path.name.startswith(".deleting-"):
                shutil.rmtree(path, ignore_errors=True)
            elif _SESSION_ID.match(path.name):
                partial = path / "uploads" / _PARTIAL_DIR
                if partial.is_dir():
                    for stale in partial.iterdir():
                        stale.unlink(missing_ok=True)

    # ----- uploads -----------------------------------------------------------------------
    def resolve_upload_path(self, session_id: str, relative: str) -> Path:
        """An existing path inside the session's uploads (e.g. an uploaded dataset folder)."""
        try:
            rel = safe_relative_path(relative)
        except UnsafePathError as exc:
            raise SidecarError("unsafe_path", str(exc)) from exc
        base = self.uploads_dir(session_id)
        current = base
        for part in rel.parts:
            current = current / part
            if current.is_symlink():
                raise SidecarError("unsafe_path", f"{relative!r} passes through a symlink")
        if not current.exists():
            raise SidecarError("not_found", f"nothing uploaded at {relative!r}")
        return current

    def begin_upload(self, session_id: str, relative_path: str, size: int, sha256: str) -> str:
        """Start a chunked upload into the session's uploads; returns the upload id."""
        base = self.uploads_dir(session_id)
        try:
            rel = safe_relative_path(relative_path)
        except UnsafePathError as exc:
            raise SidecarError("unsafe_path", str(exc)) from exc
        if rel.parts[0] == _PARTIAL_DIR:
            raise SidecarError("unsafe_path", f"{_PARTIAL_DIR!r} is reserved")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise SidecarError("bad_request", f"size must be a non-negative integer, got {size!r}")
        if size > self.limits.max_upload_file_bytes:
            raise SidecarError(
                "too_large",
                f"size {size} exceeds the per-file limit {self.limits.max_upload_file_bytes}",
            )
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise SidecarError("bad_request", f"sha256 must be 64 lowercase hex digits: {sha256!r}")
        with self._lock:
            mine = [u for u in self._uploads.values() if u.session_id == session_id]
            if len(mine) >= self.limits.max_open_uploads:
                raise SidecarError("too_large", "too many uploads in progress for this session")
            pending = sum(u.size for u in mine)
            if _tree_size(base) + pending + size > self.limits.max_upload_session_bytes:
                raise SidecarError("too_large", "the session's upload quota would be exceeded")
            if any(u.relative_path == str(rel) for u in mine):
                raise SidecarError("exists", f"an upload to {str(rel)!r} is already in progress")
            if os.path.lexists(base / rel):
                raise SidecarError("exists", f"{str(rel)!r} was already uploaded")
            upload_id = uuid.uuid4().hex
            partial = base / _PARTIAL_DIR / upload_id
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            os.close(fd)
            self._uploads[upload_id] = Upload(
                upload_id, session_id, str(rel), size, sha256, partial
            )
        return upload_id

    def upload(self, upload_id: object) -> Upload:
        """An upload in progress (raises not_found)."""
        return self._get_upload(upload_id)

    def _get_upload(self, upload_id: object) -> Upload:
        upload = self._uploads.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None:
            raise SidecarError("not_found", f"no upload in progress with id {upload_id!r}")
        return upload

    def write_chunk(self, upload_id: str, offset: int, data: bytes) -> int:
        """Append `data` at `offset` (= bytes received so far); returns bytes received.

        A chunk that exactly repeats the last one (a retry after a lost reply) is accepted
        without writing again.
        """
        with self._lock:
            upload = self._get_upload(upload_id)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise SidecarError("bad_request", "chunk data must be bytes")
            length = len(data)
            if offset + length == upload.received and length > 0 and offset < upload.received:
                return upload.received
            if offset != upload.received:
                raise SidecarError(
                    "bad_offset", f"expected offset {upload.received}, got {offset}"
                )
            if upload.received + length > upload.size:
                raise SidecarError(
                    "too_large", f"chunk goes past the declared size {upload.size}"
                )
            self._append(upload, data)
            upload.hasher.update(data)  # type: ignore[attr-defined]
            upload.received += length
            return upload.received

    def _append(self, upload: Upload, data: bytes) -> None:
        """Append a chunk to the partial file; a failed write leaves it as it was."""
        try:
            with open(upload.partial, "r+b") as handle:
                handle.seek(upload.received)
                try:
                    handle.write(data)
                    handle.flush()
                except OSError:
                    with contextlib.suppress(OSError):  # the client may resend this chunk
                        handle.truncate(upload.received)
                    raise
        except FileNotFoundError as exc:
            self._uploads.pop(upload.upload_id, None)
            raise SidecarError("not_found", "the upload's partial file is gone (the session "
                               "was cleaned up); begin the upload again") from exc
        except OSError as exc:
            if is_disk_full(exc):
                raise SidecarError("no_space", f"no space left for the upload: {exc}") from exc
            raise SidecarError("internal", f"could not write the chunk: {exc}") from exc

    def commit_upload(self, upload_id: str) -> Path:
        """Verify size and sha256, then move the file into place atomically."""
        with self._lock:
            upload = self._get_upload(upload_id)
            if upload.received != upload.size:
                raise SidecarError(
                    "bad_offset", f"received {upload.received} of {upload.size} bytes"
                )
            digest = upload.hasher.hexdigest()  # type: ignore[attr-defined]
            if digest != upload.sha256:
                self.abort_upload(upload_id)
                raise SidecarError(
                    "checksum_mismatch", f"sha256 is {digest}, expected {upload.sha256}"
                )
            base = self.uploads_dir(upload.session_id)
            rel = safe_relative_path(upload.relative_path)
            try:
                parent = ensure_directory_without_symlinks(base, rel.parent)
            except UnsafePathError as exc:
                self.abort_upload(upload_id)
                raise SidecarError("unsafe_path", str(exc)) from exc
            destination = parent / rel.name
            if os.path.lexists(destination):
                self.abort_upload(upload_id)
                raise SidecarError("exists", f"{upload.relative_path!r} already exists")
            with open(upload.partial, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(upload.partial, destination)
            del self._uploads[upload_id]
            return destination

    def abort_upload(self, upload_id: str) -> None:
        with self._lock:
            upload = self._uploads.pop(upload_id, None)
            if upload is not None:
                upload.partial.unlink(missing_ok=True)


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        # In-progress uploads are counted by their declared size instead.
        dirnames[:] = [name for name in dirnames if name != _PARTIAL_DIR]
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
