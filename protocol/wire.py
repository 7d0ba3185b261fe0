"""Size limits and hostile-input-safe msgpack decoding.

Before msgpack allocates anything, `scan_msgpack` walks the bytes once: it rejects ext
types, nesting deeper than the limit, containers that declare more items than bytes remain
(msgpack preallocates declared lengths, which is how a few KiB can allocate many MiB),
truncation and trailing bytes. Only then is `msgpack.unpackb` run, with small caps.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgpack

from .errors import ErrorCode, ProtocolError

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Caps applied to every incoming message (and to outgoing ones, so a peer never drops us)."""

    max_header_bytes: int = 64 * 1024
    """Largest header frame in bytes."""
    max_body_bytes: int = 1 * MiB
    """Largest body frame in bytes (arrays travel in buffer frames, not here)."""
    max_buffer_bytes: int = 256 * MiB
    """Largest single buffer frame in bytes; also the socket's MAXMSGSIZE."""
    max_buffers: int = 32
    """Most buffer frames after the body."""
    max_depth: int = 16
    """Deepest msgpack nesting of maps/arrays."""
    max_container_len: int = 65536
    """Most items in one msgpack array or map."""
    max_str_bytes: int = 1 * MiB
    """Longest msgpack string or binary in bytes."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, got {value!r}")

    @property
    def socket_max_message(self) -> int:
        """ZMQ_MAXMSGSIZE: the largest frame any peer may send us."""
        return max(self.max_buffer_bytes, self.max_body_bytes, self.max_header_bytes)


REQUEST_LIMITS = Limits(max_buffer_bytes=16 * MiB, max_buffers=4)
"""What a server accepts: requests carry cameras and upload chunks (the sidecar asks for
8 MiB chunks), nothing bigger.

ZeroMQ assembles a whole multipart message before the receiver sees any of it, and its
MAXMSGSIZE bounds each frame, not their number: a frame above the cap makes ZeroMQ drop
the connection before allocating it, so the smaller the per-frame cap, the less an
unauthenticated peer can make the server hold (see SPEC.md, "Flooding").
"""

_FIXED_WIDTH = {
    0xC0: 0, 0xC2: 0, 0xC3: 0,  # nil, false, true
    0xCA: 4, 0xCB: 8,  # float32/64
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,  # uint
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,  # int
}
_LENGTH_PREFIXED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # bin8..32, str8..32
_ARRAY_HEADERS = {0xDC: 2, 0xDD: 4}
_MAP_HEADERS = {0xDE: 2, 0xDF: 4}
_UINT = {1: ">B", 2: ">H", 4: ">I"}


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MSGPACK, message)


def _read_length(data: memoryview, pos: int, width: int) -> tuple[int, int]:
    if pos + width > len(data):
        raise _bad("truncated msgpack (length prefix)")
    return struct.unpack_from(_UINT[width], data, pos)[0], pos + width


def _container_size(tag: int, data: memoryview, pos: int) -> tuple[int, int] | None:
    """(items to read, new position) if `tag` opens an array/map, else None."""
    if 0x90 <= tag <= 0x9F:
        return tag & 0x0F, pos
    if 0x80 <= tag <= 0x8F:
        return 2 * (tag & 0x0F), pos
    if tag in _ARRAY_HEADERS:
        return _read_length(data, pos, _ARRAY_HEADERS[tag])
    if tag in _MAP_HEADERS:
        count, pos = _read_length(data, pos, _MAP_HEADERS[tag])
        return 2 * count, pos
    return None


def _skip_scalar(tag: int, data: memoryview, pos: int) -> int:
    """Position after the scalar whose tag byte was just read."""
    if tag <= 0x7F or tag >= 0xE0:
        return pos
    if 0xA0 <= tag <= 0xBF:
        return pos + (tag & 0x1F)
    if tag in _FIXED_WIDTH:
        return pos + _FIXED_WIDTH[tag]
    if tag in _LENGTH_PREFIXED:
        length, pos = _read_length(data, pos, _LENGTH_PREFIXED[tag])
        return pos + length
    if tag == 0xC1:
        raise _bad("msgpack byte 0xc1 is never used")
    raise _bad(f"msgpack ext types are not allowed (tag 0x{tag:02x})")


def scan_msgpack(data: memoryview, limits: Limits) -> None:
    """Check structure and cost of one msgpack object without allocating it."""
    end = len(data)
    pos = 0
    remaining = [1]  # items still to read at each open nesting level
    while remaining:
        if remaining[-1] == 0:
            remaining.pop()
            continue
        remaining[-1] -= 1
        if pos >= end:
            raise _bad("truncated msgpack")
        tag = data[pos]
        pos += 1
        opened = _container_size(tag, data, pos)
        if opened is None:
            pos = _skip_scalar(tag, data, pos)
            if pos > end:
                raise _bad("truncated msgpack (payload)")
            continue
        count, pos = opened
        if count > limits.max_container_len * 2 or count > end - pos:
            raise _bad(f"container declares {count} items, more than the data can hold")
        if len(remaining) >= limits.max_depth:
            raise _bad(f"msgpack nesting deeper than {limits.max_depth}")
        remaining.append(count)
    if pos != end:
        raise _bad(f"{end - pos} trailing bytes after the msgpack object")


SMALL_FRAME_BYTES = 1024
"""Frames up to this size skip the structure scan (most headers and request bodies): msgpack
is told that no container may declare more items than the frame has bytes, which bounds
what it can preallocate to 8 x 1024 x 1024 bytes; depth and key types are then checked on
the decoded value. The scan costs tens of microseconds per frame in Python."""


def unpack_map(frame: memoryview, limits: Limits, cap: int, what: str) -> dict[str, object]:
    """Decode a header or body frame into a dict with str keys, treating it as hostile."""
    if len(frame) > cap:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{what} frame is {len(frame)} bytes (cap {cap})")
    max_len = limits.max_container_len
    if len(frame) <= SMALL_FRAME_BYTES:
        max_len = min(max_len, len(frame))
    else:
        scan_msgpack(frame, limits)
    try:
        value = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_str_bytes,
            max_bin_len=limits.max_str_bytes,
            max_array_len=max_len,
            max_map_len=max_len,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        # UnicodeDecodeError (bad UTF-8) is a ValueError; ExtraData too.
        raise _bad(f"{what}: {type(exc).__name__}: {exc}") from None
    if not isinstance(value, dict):
        raise _bad(f"{what} must be a msgpack map, got {type(value).__name__}")
    _check_tree(value, what, limits.max_depth)
    return value


def _check_tree(value: object, what: str, max_depth: int) -> None:
    """Map keys are str; nesting is at most `max_depth` deep (as the scan would enforce)."""
    level: list[object] = [value]
    depth = 1
    while level:
        if depth >= max_depth:  # the scan refuses the max_depth-th nested container
            raise _bad(f"{what}: msgpack nesting deeper than {max_depth}")
        below: list[object] = []
        for item in level:
            if type(item) is dict:
                if any(type(key) is not str for key in item):
                    bad = next(k for k in item if type(k) is not str)
                    raise _bad(f"{what}: map keys must be strings, got {type(bad).__name__}")
                below += [v for v in item.values() if type(v) is dict or type(v) is list]
            else:
                below += [v for v in item if type(v) is dict or type(v) is list]  # type: ignore[attr-defined]
        level = below
        depth += 1


def pack_map(value: dict[str, object]) -> bytes:
    """Encode a header or body map (float64 kept exact; bytes as bin)."""
    return msgpack.packb(value, use_bin_type=True, use_single_float=False)
