"""The wire format: one class packs, signs, verifies and unpacks every message."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import struct
import time
import types
import typing
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from .errors import ErrorCode, ProtocolError
from .messages import MESSAGE_TYPES, Header, Message
from .schema import DTYPES, Record, record_fields
from .version import PROTOCOL_VERSION
from .wire import Limits, pack_map, unpack_map

MAX_ARRAY_RANK = 8
Frame = bytes | memoryview


@dataclass(frozen=True)
class Envelope:
    """A verified, decoded message and its header."""

    header: Header
    message: Message

    @property
    def msg_id(self) -> str:
        return self.header.msg_id


# --------------------------------------------------------------------------- body <-> records


def encode_record(
    record: Record, buffers: list[memoryview], *, leave_out_unset: bool = True
) -> dict[str, Any]:
    """Body map of a record; arrays are appended to `buffers` and replaced by descriptors.

    With `leave_out_unset`, a field at its None default is left out: the receiver applies its
    own default, so a peer whose version of the field has a value default (e.g. a 2.1
    sidecar's `session.create` `preset`) reads "unset" as that default instead of refusing nil.
    """
    unset_when_none = _none_default_fields(type(record)) if leave_out_unset else frozenset()
    body = {}
    for name, _, _, holds_wire_refs in _wire_fields(type(record)):
        value = getattr(record, name)
        if value is None and name in unset_when_none:
            continue
        # Plain values go as they are: msgpack writes tuples as arrays.
        body[name] = _to_wire(value, buffers) if holds_wire_refs else value
    return body


def _to_wire(value: Any, buffers: list[memoryview]) -> Any:
    if isinstance(value, np.ndarray):
        return _array_descriptor(value, buffers)
    if isinstance(value, Record):
        return encode_record(value, buffers)
    if isinstance(value, tuple):
        return [_to_wire(item, buffers) for item in value]
    return value


def _array_descriptor(array: np.ndarray, buffers: list[memoryview]) -> dict[str, Any]:
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    if not array.flags.c_contiguous:  # senders normally hold contiguous arrays: no copy
        array = array.copy(order="C")
    buffers.append(memoryview(array.reshape(-1).view(np.uint8)))
    return {"__array__": len(buffers) - 1, "dtype": array.dtype.str, "shape": list(array.shape)}


def decode_record(cls: type[Record], body: Any, buffers: Sequence[memoryview], where: str,
                  used: set[int]) -> Record:
    """Build a record from its body map (unknown keys ignored); validation runs in __init__."""
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{where}: expected a map")
    kwargs = {}
    for name, annotation, has_default, holds_wire_refs in _wire_fields(cls):
        if name not in body:
            if not has_default:
                raise ProtocolError(ErrorCode.MISSING_FIELD, f"{where}.{name} is required")
            continue
        value = body[name]
        if holds_wire_refs:
            value = _from_wire(value, annotation, buffers, f"{where}.{name}", used)
        kwargs[name] = value  # plain values: the record's own check normalises them
    return cls(**kwargs)


@cache
def _wire_fields(cls: type) -> tuple[tuple[str, Any, bool, bool], ...]:
    """(name, annotation, has a default, may hold arrays or records) per field."""
    return tuple((name, annotation, _has_default(cls, name), _holds_wire_refs(annotation))
                 for name, annotation, _ in record_fields(cls))


def _holds_wire_refs(annotation: Any) -> bool:
    if annotation is np.ndarray:
        return True
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return True
    return any(_holds_wire_refs(arg) for arg in typing.get_args(annotation)
               if arg is not Ellipsis and not isinstance(arg, str | int))


@cache
def _none_default_fields(cls: type) -> frozenset[str]:
    """Fields whose default is None (None means "unset" for them)."""
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return frozenset(name for name, f in fields.items() if f.default is None)


def _has_default(cls: type, name: str) -> bool:
    f = cls.__dataclass_fields__[name]  # type: ignore[attr-defined]
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _from_wire(value: Any, annotation: Any, buffers: Sequence[memoryview], where: str,
               used: set[int]) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        if len(members) == 1:
            return _from_wire(value, members[0], buffers, where, used)
        return value  # scalar unions: validated by the record
    if annotation is np.ndarray:
        return _array_from_descriptor(value, buffers, where, used)
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return decode_record(annotation, value, buffers, where, used)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                _from_wire(v, args[0], buffers, f"{where}[{i}]", used) for i, v in enumerate(value)
            )
        if len(args) == len(value):
            return tuple(
                _from_wire(v, a, buffers, f"{where}[{i}]", used)
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
    return value


def _array_from_descriptor(value: Any, buffers: Sequence[memoryview], where: str,
                           used: set[int]) -> np.ndarray:
    def bad(message: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_ARRAY, f"{where}: {message}")

    if not isinstance(value, dict) or set(value) != {"__array__", "dtype", "shape"}:
        raise bad("expected an array descriptor {__array__, dtype, shape}")
    index, dtype, shape = value["__array__"], value["dtype"], value["shape"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(buffers):
        raise bad(f"buffer index {index!r} out of range (have {len(buffers)} buffers)")
    if index in used:
        raise bad(f"buffer {index} referenced twice")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise bad(f"dtype {dtype!r} not allowed (allowed: {sorted(DTYPES)})")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_ARRAY_RANK
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise bad(f"shape {shape!r} must be a list of at most {MAX_ARRAY_RANK} non-negative ints")
    buffer = buffers[index]
    expected = math.prod(shape) * np.dtype(dtype).itemsize  # Python ints: no overflow
    if expected != buffer.nbytes:
        raise bad(f"shape {shape} x {dtype} needs {expected} bytes, buffer has {buffer.nbytes}")
    used.add(index)
    return np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(tuple(shape))


# --------------------------------------------------------------------------- replay protection


class ReplayGuard:
    """Rejects msg_ids seen within the window and timestamps outside ±window.

    Remembers at most `max_ids` ids (LRU by arrival). When an id still inside the window
    must be forgotten, messages not newer than it are refused from then on, so eviction
    never reopens a replay. One guard serves one sender (see `ReplayGuards`): a sender whose
    clock runs ahead can then only move its own floor.
    """

    def __init__(self, window_s: float = 300.0, max_ids: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        if max_ids < 1:
            raise ValueError(f"max_ids must be at least 1, got {max_ids!r}")
        self.window_s = window_s
        self.max_ids = max_ids
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._floor_ts = -math.inf
        self.newest_ts = -math.inf
        """Latest timestamp accepted (a guard whose newest is stale can be dropped)."""

    def check(self, msg_id: str, ts: float) -> None:
        now = self._clock()
        if abs(now - ts) > self.window_s:
            raise ProtocolError(
                ErrorCode.STALE,
                f"message clock is {ts - now:+.1f} s from the receiver's; the allowed skew is "
                f"±{self.window_s:g} s: set the sender's clock right (e.g. enable NTP)",
                parent_id=msg_id)
        if msg_id in self._seen or ts <= self._floor_ts:
            raise ProtocolError(ErrorCode.REPLAYED, f"message {msg_id} replayed",
                                parent_id=msg_id)
        self._forget_old(now)
        self._seen[msg_id] = ts
        self.newest_ts = max(self.newest_ts, ts)

    def idle(self) -> bool:
        """Nothing it remembers could be replayed: every id would now be refused as stale."""
        return self._clock() - self.newest_ts > self.window_s

    def _forget_old(self, now: float) -> None:
        while self._seen:
            oldest_id, oldest_ts = next(iter(self._seen.items()))
            expired = now - oldest_ts > self.window_s
            if not expired and len(self._seen) < self.max_ids:
                return
            del self._seen[oldest_id]
            if not expired:
                self._floor_ts = max(self._floor_ts, oldest_ts)


class ReplayGuards:
    """One `ReplayGuard` per sender, at most `max_senders` of them.

    A guard is forgotten only once idle (all its ids stale), so forgetting never reopens a
    replay; when all are busy a new sender is refused (`busy`) instead.
    """

    def __init__(self, window_s: float = 300.0, max_ids: int = 100_000,
                 clock: Callable[[], float] = time.time, max_senders: int = 1024) -> None:
        if max_senders < 1:
            raise ValueError(f"max_senders must be at least 1, got {max_senders!r}")
        ReplayGuard(window_s, max_ids, clock)  # validates the arguments now
        self.window_s, self.max_ids, self.max_senders = window_s, max_ids, max_senders
        self._clock = clock
        self._guards: OrderedDict[str | None, ReplayGuard] = OrderedDict()

    def check(self, sender: str | None, msg_id: str, ts: float) -> None:
        guard = self._guards.get(sender)
        if guard is None:
            guard = self._new_guard(sender, msg_id)
        self._guards.move_to_end(sender)
        guard.check(msg_id, ts)

    def _new_guard(self, sender: str | None, msg_id: str) -> ReplayGuard:
        if len(self._guards) >= self.max_senders:
            for name in [n for n, g in self._guards.items() if g.idle()]:
                del self._guards[name]
        if len(self._guards) >= self.max_senders:
            raise ProtocolError(ErrorCode.BUSY, f"{self.max_senders} clients sent messages "
                                f"within the last {self.window_s:g} s; try again later",
                                parent_id=msg_id)
        guard = self._guards[sender] = ReplayGuard(self.window_s, self.max_ids, self._clock)
        return guard


# --------------------------------------------------------------------------- codec


AUTH_MAGIC = b"E3D" + bytes([PROTOCOL_VERSION[0]])
"""First bytes of every auth frame: names the framing, so another major is told apart."""
AUTH_BYTES = len(AUTH_MAGIC) + 32
LEGACY_SIGNATURE_BYTES = 32
"""Protocol 1 signed every byte with HMAC-SHA256 into a bare 32-byte first frame."""
MAX_LEGACY_BYTES = 64 * 1024
"""Largest protocol-1 message checked so that its sender can be told to upgrade."""


def frame_digest(frame: Frame) -> str:
    """SHA-256 of one frame (hex): the fastest stdlib hash here, see SPEC.md 2.3."""
    return hashlib.sha256(frame).hexdigest()


class Codec:
    """Packs, signs, verifies and unpacks protocol messages.

    Frames of one message::

        [auth, header, body, buffer_0, ..., buffer_k]

        auth       36 bytes: b"E3D" + major, then HMAC-SHA256(key, magic || header)
        header     msgpack map {v, type, msg_id, parent_id, ts, session, seq, sender,
                   sizes: [len body, len buffer_0, ...],
                   digests: [sha256 hex of body, of buffer_0, ...]}
        body       msgpack map of the message's fields; each numpy array is replaced by
                   {"__array__": i, "dtype": "<f4", "shape": [...]}
        buffer_i   the raw little-endian bytes of array i (sent and received zero-copy)

    Only the small header is MACed; it pins the count and length of every later frame, the
    body's SHA-256 and, unless the transport authenticates every byte (`buffer_digests=False`:
    CURVE, a private ipc:// socket), each buffer's. So a receiver rejects an unauthenticated message
    after hashing at most one header, before touching any buffer.

    Unpacking checks, in order: frame count and sizes, the auth tag (constant-time), header
    (version, sender, replay window), declared sizes, digests, then the body (msgpack
    structure, then the message schema). Any failure raises `ProtocolError`; `.answerable`
    is False where the sender is not authenticated, and the receiver drops the message.
    Decoded arrays are views of the received frames (no copy).
    """

    def __init__(
        self,
        key: bytes,
        *,
        limits: Limits | None = None,
        send_limits: Limits | None = None,
        buffer_digests: bool = True,
        replay_window_s: float = 300.0,
        max_seen_ids: int = 100_000,
        max_senders: int = 1024,
        version: tuple[int, int] = PROTOCOL_VERSION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(key, bytes) or len(key) < 16:
            raise ValueError("key must be at least 16 random bytes (see new_key())")
        self._key = key
        self.limits = limits or Limits()
        """Caps on what this side accepts."""
        self.send_limits = send_limits or Limits()
        """Caps on what this side sends (the peer's `limits`, so it never drops us)."""
        self.buffer_digests = buffer_digests
        """Send SHA-256 digests of body and buffers, and require them from the peer."""
        self.version = version
        self._clock = clock
        self.replay_guards = ReplayGuards(replay_window_s, max_seen_ids, clock, max_senders)

    @property
    def buffer_integrity(self) -> str:
        """What the handshake states: "digest" or "transport"."""
        return "digest" if self.buffer_digests else "transport"

    # ----------------------------------------------------------------- signing

    def auth_tag(self, header: Frame) -> bytes:
        """The first frame: magic, then HMAC-SHA256 over magic and the header frame."""
        return AUTH_MAGIC + hmac.digest(self._key, AUTH_MAGIC + bytes(header), "sha256")

    def legacy_signature(self, frames: Sequence[Frame]) -> bytes:
        """Protocol 1's signature: HMAC-SHA256 over the frame count and every frame."""
        mac = hmac.new(self._key, struct.pack(">Q", len(frames)), hashlib.sha256)
        for frame in frames:
            view = memoryview(frame)
            mac.update(struct.pack(">Q", view.nbytes))
            mac.update(view)
        return mac.digest()

    # ----------------------------------------------------------------- pack

    def pack(
        self,
        message: Message,
        *,
        parent_id: str | None = None,
        session: str | None = None,
        seq: int | None = None,
        msg_id: str | None = None,
        sender: str | None = None,
    ) -> list[Frame]:
        """Signed frames for `message`; arrays are passed as memoryviews (no copy)."""
        if not isinstance(message, Message):
            raise TypeError(f"message must be a protocol Message, got {type(message).__name__}")
        buffers: list[memoryview] = []
        body = pack_map(encode_record(message, buffers))
        payload: list[Frame] = [body, *buffers]
        self._check_outgoing(payload, message)
        header = Header(
            v=self.version, type=message.type_name, msg_id=msg_id or uuid.uuid4().hex,
            parent_id=parent_id, ts=self._clock(), session=session, seq=seq, sender=sender,
            sizes=tuple(memoryview(f).nbytes for f in payload),
            digests=tuple(frame_digest(f) for f in (payload if self.buffer_digests else [body])),
        )
        header_frame = pack_map(encode_record(header, [], leave_out_unset=False))
        if len(header_frame) > self.send_limits.max_header_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"{message.type_name}: header is "
                                f"{len(header_frame)} bytes (cap "
                                f"{self.send_limits.max_header_bytes})")
        return [self.auth_tag(header_frame), header_frame, *payload]

    def _check_outgoing(self, payload: list[Frame], message: Message) -> None:
        limits = self.send_limits
        caps = [limits.max_body_bytes] + [limits.max_buffer_bytes] * (len(payload) - 1)
        if len(payload) - 1 > limits.max_buffers:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"{message.type_name}: "
                                f"{len(payload) - 1} arrays exceed {limits.max_buffers}")
        for i, (frame, cap) in enumerate(zip(payload, caps, strict=True)):
            if memoryview(frame).nbytes > cap:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"{message.type_name}: frame {i + 2} "
                                    f"is {memoryview(frame).nbytes} bytes (cap {cap})")

    # ----------------------------------------------------------------- unpack

    def unpack(self, frames: Sequence[Any], *, sender: bytes | None = None,
               is_fresh_reply: Callable[[str], bool] | None = None) -> Envelope:
        """Verify and decode received frames (bytes, memoryviews or zmq.Frame objects).

        `sender`: the ROUTER identity the frames came from; the signed header must name it.
        `is_fresh_reply(parent_id)`: True for a reply to a request this side just sent
        (its fresh msg_id already rules out a replay, so the clock window is not applied:
        a client whose clock is off still reads the server's `stale` error).
        """
        views = [memoryview(frame) for frame in frames]
        self._check_frame_sizes(views)
        if not hmac.compare_digest(self.auth_tag(views[1]), views[0].tobytes()):
            raise ProtocolError(ErrorCode.BAD_SIGNATURE, "signature does not match")
        try:
            header = self._decode_header(views[1])
            self._check_sender(header, sender)
            if is_fresh_reply is None or not is_fresh_reply(header.parent_id or ""):
                self.replay_guards.check(header.sender, header.msg_id, header.ts)
            self._check_payload(header, views[2:])
            message = self._decode_body(header, views[2], views[3:])
        except ProtocolError as exc:
            exc.authenticated = True
            raise
        return Envelope(header, message)

    def _check_frame_sizes(self, views: list[memoryview]) -> None:
        """Cheap checks on lengths only: nothing here reads a byte of the buffers."""
        limits = self.limits
        if not 3 <= len(views) <= 3 + limits.max_buffers:
            raise ProtocolError(ErrorCode.BAD_FRAMES, f"{len(views)} frames; a message has "
                                f"3 to {3 + limits.max_buffers}")
        if views[0].nbytes != AUTH_BYTES or views[0][:len(AUTH_MAGIC)] != AUTH_MAGIC:
            raise self._framing_error(views[0])
        caps = [limits.max_header_bytes, limits.max_body_bytes]
        caps += [limits.max_buffer_bytes] * (len(views) - 3)
        for i, (view, cap) in enumerate(zip(views[1:], caps, strict=True)):
            if view.nbytes > cap:
                # Dropped: without a verified header there is nobody to answer.
                raise ProtocolError(ErrorCode.TOO_LARGE,
                                    f"frame {i + 1} is {view.nbytes} bytes (cap {cap})")

    def _framing_error(self, first: memoryview) -> ProtocolError:
        if first.nbytes == LEGACY_SIGNATURE_BYTES:
            return ProtocolError(ErrorCode.UNSUPPORTED_VERSION, "a protocol 1 message (bare "
                                 "32-byte signature); this side speaks "
                                 f"{self.version[0]}.{self.version[1]}")
        if first.nbytes == AUTH_BYTES and first[:3] == AUTH_MAGIC[:3]:
            return ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"a protocol {first[3]} "
                                 f"message; this side speaks {self.version[0]}.{self.version[1]}")
        return ProtocolError(ErrorCode.BAD_SIGNATURE, f"auth frame is {first.nbytes} bytes, "
                             f"expected {AUTH_BYTES} starting {AUTH_MAGIC!r}")

    def _check_sender(self, header: Header, sender: bytes | None) -> None:
        if sender is None:
            return
        if header.sender is None or header.sender.encode("ascii") != sender:
            # Not answerable: a header copied from another client's message.
            raise ProtocolError(ErrorCode.BAD_SIGNATURE, f"header names sender "
                                f"{header.sender!r}, the message came from {sender.hex()}")

    def _check_payload(self, header: Header, payload: list[memoryview]) -> None:
        """Frames must be those the signed header commits to: sizes first (free), then
        digests, the only pass over buffer bytes. A mismatch means the frames are not the
        key holder's (altered, re-split or appended): dropped like a bad signature."""
        actual = [view.nbytes for view in payload]
        if list(header.sizes) != actual:
            raise ProtocolError(ErrorCode.BAD_SIGNATURE, f"header declares frame sizes "
                                f"{list(header.sizes)}, received {actual}")
        digested = len(header.digests)
        if digested != len(payload) and (self.buffer_digests or digested != 1):
            raise ProtocolError(ErrorCode.BAD_SIGNATURE, f"{digested} digests for "
                                f"{len(payload)} frames; this transport requires one per frame"
                                if self.buffer_digests else "the body's digest is missing")
        for i, (view, digest) in enumerate(zip(payload, header.digests, strict=False)):
            if not hmac.compare_digest(frame_digest(view), digest):
                raise ProtocolError(ErrorCode.BAD_SIGNATURE,
                                    f"frame {i + 2} does not match its digest")

    def _decode_header(self, frame: memoryview) -> Header:
        raw = unpack_map(frame, self.limits, self.limits.max_header_bytes, "header")
        msg_id = raw.get("msg_id") if isinstance(raw.get("msg_id"), str) else None
        try:
            header = decode_record(Header, raw, (), "header", set())
        except ProtocolError as exc:
            raise ProtocolError(ErrorCode.BAD_HEADER, exc.message, parent_id=None) from None
        if header.v[0] != self.version[0]:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"peer speaks protocol {header.v[0]}.{header.v[1]}, this side "
                f"{self.version[0]}.{self.version[1]}; the major versions must match",
                parent_id=msg_id,
            )
        return header

    def _decode_body(self, header: Header, frame: memoryview,
                     buffers: list[memoryview]) -> Message:
        try:
            cls = MESSAGE_TYPES.get(header.type)
            if cls is None:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {header.type!r}")
            raw = unpack_map(frame, self.limits, self.limits.max_body_bytes, "body")
            used: set[int] = set()
            message = decode_record(cls, raw, buffers, header.type, used)
            if len(used) != len(buffers):
                raise ProtocolError(ErrorCode.BAD_FRAMES, f"{len(buffers) - len(used)} "
                                    "buffer frames are not referenced by the body")
        except ProtocolError as exc:
            exc.parent_id = header.msg_id
            raise
        assert isinstance(message, Message)
        return message
