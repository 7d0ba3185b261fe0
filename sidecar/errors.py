"""Errors a handler turns into a protocol error reply with a stable code."""

from __future__ import annotations

from typing import Literal

ErrorCode = Literal[
    "bad_request",
    "not_found",
    "session_busy",
    "unsafe_path",
    "too_large",
    "checksum_mismatch",
    "bad_offset",
    "exists",
    "unknown_job_kind",
    "queue_full",
    "not_ready",
    "not_allowed",
    "no_space",
    "internal",
]


class SidecarError(Exception):
    """A request the sidecar refuses; `code` is stable, `message` is for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
