"""Download a file a session exported into a local folder, one chunk per reply.

Driven by replies arriving in the poll step, like upload.py. Resumable: the bytes already
in `<name>.part` are kept and the download continues after them; the finished file takes
its name only once its SHA-256 matches the sidecar's, so a partial or corrupt file never
looks like a finished one. Progress and cancel show like a job's.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import connection

CHUNK_BYTES = 4 << 20
"""Bytes asked for per request."""
JOB_KIND = "download"


@dataclass
class Download:
    """One exported file on its way into `target`."""

    session_id: str
    remote_path: str
    target: Path
    offset: int = 0
    size: int = -1
    sha256: str = ""
    aborted: bool = False

    @property
    def part(self) -> Path:
        return self.target.with_name(self.target.name + ".part")


def start(context: Any, session_id: str, remote_path: str, folder: Path) -> Download:
    """Begin (or resume) downloading `remote_path` ("exports/...") into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    job = Download(session_id, remote_path, folder / PurePosixPath(remote_path).name)
    job.offset = job.part.stat().st_size if job.part.is_file() else 0
    connection.LINK.download = job
    status = context.window_manager.edit3d
    status.job_id, status.job_kind, status.job_state = "", JOB_KIND, "RUNNING"
    status.progress, status.step, status.total, status.eta_s = 0.0, 0, 0, -1.0
    status.loss = 0.0
    resumed = f" (resuming after {job.offset} bytes)" if job.offset else ""
    status.job_message = f"downloading {job.target.name}{resumed}"
    _request_next(context, job)
    return job


def abort(context: Any) -> bool:
    """Stop the running download (its .part file stays, to be resumed)."""
    job = connection.LINK.download
    if job is None:
        return False
    job.aborted = True
    _finish(context, "CANCELLED", f"download of {job.target.name} stopped; Download resumes it")
    return True


def _request_next(context: Any, job: Download) -> None:
    msg = connection.messages().DownloadChunk(
        session_id=job.session_id, path=job.remote_path, offset=job.offset, length=CHUNK_BYTES
    )
    connection.request(context, msg, _on_data, _on_error)


def _on_data(context: Any, reply: Any) -> None:
    job = connection.LINK.download
    if job is None or job.aborted:
        return
    if reply.offset != job.offset:
        _fail(context, job, f"the sidecar sent bytes from {reply.offset}, not {job.offset}")
        return
    job.size, job.sha256 = reply.size, reply.sha256
    data = reply.data.tobytes()
    with job.part.open("ab") as handle:
        handle.write(data)
    job.offset += len(data)
    status = context.window_manager.edit3d
    status.progress = min(1.0, job.offset / job.size) if job.size else 1.0
    if job.offset < job.size and data:
        _request_next(context, job)
        return
    _complete(context, job)


def _complete(context: Any, job: Download) -> None:
    digest = hashlib.sha256()
    with job.part.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if job.offset != job.size or digest.hexdigest() != job.sha256:
        job.part.unlink(missing_ok=True)  # a resumed part of another version: start afresh
        _fail(context, job, f"{job.target.name} does not match the sidecar's checksum "
                            "(the file changed?); Download again")  # fmt: skip
        return
    os.replace(job.part, job.target)
    _finish(context, "FINISHED", f"saved {job.target}")


def _on_error(context: Any, text: str) -> None:
    job = connection.LINK.download
    if job is not None:
        _fail(context, job, f"download of {job.remote_path} failed: {text}")


def _fail(context: Any, job: Download, message: str) -> None:
    _finish(context, "FAILED", message)
    connection.report_error(context, message)


def _finish(context: Any, state: str, message: str) -> None:
    connection.LINK.download = None
    status = context.window_manager.edit3d
    status.job_state, status.job_message = state, message
    if state == "FINISHED":
        status.progress = 1.0
