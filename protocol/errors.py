"""Protocol errors: one exception type carrying a stable, machine-readable code."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable error codes; they appear on the wire in `error` replies (see SPEC.md)."""

    BAD_FRAMES = "bad_frames"
    """Wrong number of frames or a frame of the wrong size."""
    BAD_SIGNATURE = "bad_signature"
    """Missing or wrong header HMAC, a header naming another sender, or frames that do not
    match the header's sizes or digests (the message is dropped, never answered)."""
    REPLAYED = "replayed"
    """A msg_id seen within the replay window (dropped)."""
    STALE = "stale"
    """The header timestamp lies outside the replay window (answered: names the skew)."""
    TOO_LARGE = "too_large"
    """A frame exceeds its size cap."""
    BAD_MSGPACK = "bad_msgpack"
    """Truncated, trailing, malformed or over-nested msgpack, or bad UTF-8."""
    BAD_HEADER = "bad_header"
    """The header map is missing a field or has one of the wrong type."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """The peer's protocol major version differs from ours."""
    UNKNOWN_TYPE = "unknown_type"
    """No message type of that name."""
    MISSING_FIELD = "missing_field"
    """A required field is absent from the body."""
    INVALID_FIELD = "invalid_field"
    """A field has the wrong type, is out of range, too long, non-finite or an unsafe path."""
    BAD_ARRAY = "bad_array"
    """An array descriptor names a bad dtype, shape or buffer."""
    NOT_FOUND = "not_found"
    """The named session, turn, job or upload does not exist."""
    CONFLICT = "conflict"
    """The request conflicts with the current state (e.g. a turn is still running)."""
    BUSY = "busy"
    """The server refuses the request now (e.g. queue full); it may be retried later."""
    UNSUPPORTED = "unsupported"
    """The server knows the request but lacks the capability (e.g. no GPU)."""
    NOT_ALLOWED = "not_allowed"
    """The server's operator does not allow this (e.g. an editor not on its allow-list)."""
    NO_SPACE = "no_space"
    """The sidecar machine's disk is full; nothing partial was kept. Retry after freeing space."""
    INTERNAL = "internal"
    """The server failed while handling a valid request."""
    TIMEOUT = "timeout"
    """Client side: no reply within the timeout."""


DROP_CODES = frozenset({ErrorCode.BAD_SIGNATURE, ErrorCode.REPLAYED})
"""Errors never answered: the sender is not authenticated, or the message is a copy.

`stale` is answered: the header is authentic and its sender needs to hear that its clock
is off (the error names the allowed skew)."""


class ProtocolError(ValueError):
    """A message could not be encoded, decoded or validated.

    `parent_id` is the offending message's id when its header could be read, so the
    receiver can address an error reply to it. `authenticated` is set once the signature
    verified; `answerable` is False for messages that must be dropped silently (anything
    before the signature check, bad signatures, replays).
    """

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        detail: str = "",
        parent_id: str | None = None,
    ) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = ErrorCode(code) if code in ErrorCode._value2member_map_ else code
        self.message = message
        self.detail = detail
        self.parent_id = parent_id
        self.authenticated = False

    @property
    def answerable(self) -> bool:
        return self.authenticated and self.code not in DROP_CODES


class RemoteError(RuntimeError):
    """The server answered a request with an `error` reply."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.detail = detail


class RequestTimeout(TimeoutError):
    """No reply arrived within the request's timeout (after any retries)."""


class VersionMismatch(RuntimeError):
    """The server speaks a different protocol major version."""
