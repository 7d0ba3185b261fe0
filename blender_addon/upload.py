"""Upload a local dataset folder to a (remote) sidecar session, one chunk per reply.

Driven entirely by replies arriving in the poll step: begin → chunk … → commit per file,
then the next file. Nothing waits; progress shows in the panel like a job's, and the
cancel button aborts it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import connection

MAX_CHUNK = 4 << 20
"""Bytes per chunk at most (the sidecar may ask for less)."""
JOB_KIND = "upload"


def dataset_files(root: Path) -> list[Path]:
    """Files under root to send (hidden files and folders skipped), sorted."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    files = [
        p for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]  # fmt: skip
    if not files:
        raise FileNotFoundError(f"{root} has no files to upload")
    if not any(p.name == "transforms.json" for p in files):
        raise FileNotFoundError(f"{root} has no transforms.json: not a nerfstudio dataset")
    return files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class DatasetUpload:
    """One folder being uploaded as `<dest>/...` into a session's upload area."""

    session_id: str
    root: Path
    dest: str
    files: list[Path]
    total_bytes: int
    sent_bytes: int = 0
    index: int = 0
    upload_id: str = ""
    chunk_size: int = MAX_CHUNK
    offset: int = 0
    done_paths: list[str] = field(default_factory=list)
    aborted: bool = False

    @property
    def current(self) -> Path:
        return self.files[self.index]

    def remote_path(self, path: Path) -> str:
        return f"{self.dest}/{path.relative_to(self.root).as_posix()}"


def start(context: Any, session_id: str, root: Path) -> DatasetUpload:
    """Begin uploading root into the session as `<root name>/`."""
    status = context.window_manager.edit3d
    files = dataset_files(root)
    job = DatasetUpload(
        session_id, root, root.name or "dataset", files, sum(p.stat().st_size for p in files)
    )
    connection.LINK.uploads = job
    status.job_id, status.job_kind, status.job_state = "", JOB_KIND, "RUNNING"
    status.progress, status.step, status.total, status.eta_s = 0.0, 0, len(files), -1.0
    status.job_message = f"uploading {len(files)} files"
    _begin_file(context, job)
    return job


def abort(context: Any) -> bool:
    """Stop the running upload (its partial file is deleted by the sidecar)."""
    job = connection.LINK.uploads
    if job is None:
        return False
    job.aborted = True
    if job.upload_id:
        connection.request(context, connection.messages().UploadAbort(upload_id=job.upload_id))
    _finish(context, job, "CANCELLED", "upload cancelled")
    return True


def _begin_file(context: Any, job: DatasetUpload) -> None:
    path = job.current
    msg = connection.messages().UploadBegin(
        session_id=job.session_id,
        path=job.remote_path(path),
        size=path.stat().st_size,
        sha256=sha256_of(path),
    )
    connection.request(context, msg, _on_ready, _on_error)


def _on_ready(context: Any, reply: Any) -> None:
    job = connection.LINK.uploads
    if job is None or job.aborted:
        return
    job.upload_id, job.chunk_size, job.offset = reply.upload_id, reply.chunk_size, 0
    _send_chunk(context, job)


def _send_chunk(context: Any, job: DatasetUpload) -> None:
    size = job.current.stat().st_size
    if job.offset >= size:
        msg = connection.messages().UploadCommit(upload_id=job.upload_id)
        connection.request(context, msg, _on_committed, _on_error)
        return
    with job.current.open("rb") as fh:
        fh.seek(job.offset)
        data = fh.read(min(job.chunk_size, MAX_CHUNK))
    msg = connection.messages().UploadChunk(
        upload_id=job.upload_id, offset=job.offset, data=np.frombuffer(data, dtype=np.uint8)
    )
    job.offset += len(data)
    job.sent_bytes += len(data)
    connection.request(context, msg, _on_chunk_stored, _on_error)


def _on_chunk_stored(context: Any, _reply: Any) -> None:
    status = context.window_manager.edit3d
    job = connection.LINK.uploads
    if job is None or job.aborted:
        return
    status.progress = job.sent_bytes / job.total_bytes if job.total_bytes else 1.0
    _send_chunk(context, job)


def _on_committed(context: Any, reply: Any) -> None:
    status = context.window_manager.edit3d
    job = connection.LINK.uploads
    if job is None or job.aborted:
        return
    job.done_paths.append(reply.path)
    job.index += 1
    job.upload_id = ""
    props = context.scene.edit3d
    status.step = job.index
    if job.index < len(job.files):
        _begin_file(context, job)
        return
    props.uploaded_dataset = job.dest
    _finish(context, job, "FINISHED", f"uploaded {len(job.files)} files to {job.dest}/")


def _on_error(context: Any, text: str) -> None:
    job = connection.LINK.uploads
    if job is None:
        return
    _finish(context, job, "FAILED", f"upload of {job.current.name} failed: {text}")
    connection.report_error(context, context.window_manager.edit3d.job_message)


def _finish(context: Any, job: DatasetUpload, state: str, message: str) -> None:
    status = context.window_manager.edit3d
    connection.LINK.uploads = None
    status.job_state, status.job_message = state, message
    if state == "FINISHED":
        status.progress = 1.0
