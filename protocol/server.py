"""Server side of the transport: a ROUTER socket wrapper and a per-session event ring."""

from __future__ import annotations

import errno
import hmac
import logging
import os
import socket
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from .codec import LEGACY_SIGNATURE_BYTES, MAX_LEGACY_BYTES, Codec, Envelope
from .connection import (
    InsecureTransportError,
    check_private_ipc,
    configure_curve_server,
    ipc_path,
    is_loopback,
    transport_authenticates,
)
from .droplog import DropLog
from .errors import ErrorCode, ProtocolError
from .messages import ErrorReply, Message
from .wire import REQUEST_LIMITS, Limits, unpack_map

log = logging.getLogger(__name__)


class InsecureBindError(ValueError):
    """Refused to bind a non-loopback endpoint without CURVE encryption."""


@dataclass(frozen=True)
class Incoming:
    """A verified request and the ROUTER identity of the peer that sent it."""

    identity: bytes
    envelope: Envelope

    @property
    def message(self) -> Message:
        return self.envelope.message


class ServerEndpoint:
    """ROUTER socket that speaks the protocol: verify, decode, answer errors, push events.

    Protocol failures never reach the caller: answerable ones (bad body, unknown type, wrong
    version, stale clock, ...) get an `error` reply; unauthenticated ones (bad auth tag,
    another client's header, replay, frames not matching the signed header, frames over the
    caps) are dropped after one header HMAC at most, counted in `stats` and logged as
    periodic counts (`drops`). Buffers are hashed only on transports that do not
    authenticate every byte themselves (`buffer_integrity`). Not thread-safe: one thread
    owns the endpoint (a ZeroMQ socket must not be shared between threads).
    """

    def __init__(
        self,
        endpoint: str,
        key: bytes,
        *,
        curve_secret_key: str | None = None,
        allow_insecure_remote: bool = False,
        limits: Limits | None = None,
        context: zmq.Context[Any] | None = None,
        codec: Codec | None = None,
    ) -> None:
        if not is_loopback(endpoint) and curve_secret_key is None and not allow_insecure_remote:
            raise InsecureBindError(
                f"refusing to bind {endpoint!r} without CURVE encryption: it is reachable "
                "from other machines (pass a CURVE key, or explicitly allow insecure binding)"
            )
        curve = curve_secret_key is not None
        by_transport = transport_authenticates(endpoint, curve)
        if by_transport and not curve:
            try:
                check_private_ipc(endpoint)
            except InsecureTransportError as exc:
                raise InsecureBindError(str(exc)) from None
        _refuse_live_ipc(endpoint)
        self.codec = codec or Codec(key, limits=limits or REQUEST_LIMITS,
                                    buffer_digests=not by_transport)
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # Replies to a vanished peer raise instead of disappearing silently.
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # A reconnecting client keeps its routing id (and so its event subscriptions).
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.socket.setsockopt(zmq.MAXMSGSIZE, self.codec.limits.socket_max_message)
        if curve_secret_key is not None:
            configure_curve_server(self.socket, curve_secret_key)
        self.socket.bind(endpoint)
        self.endpoint: str = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        socket_file = ipc_path(self.endpoint)
        if socket_file is not None and os.name == "posix":
            os.chmod(socket_file, 0o600)  # the 0700 directory already keeps others out
        self.stats: Counter[str] = Counter()
        self.drops = DropLog(log)

    @property
    def buffer_integrity(self) -> str:
        """For the handshake: "digest" (per-frame SHA-256 in the header) or "transport"."""
        return self.codec.buffer_integrity

    # ----------------------------------------------------------------- receive

    def recv(self, timeout_ms: int = 0, max_skipped: int = 100) -> Incoming | None:
        """The next verified request, or None when none is waiting.

        Waits at most `timeout_ms` for the first message; bad messages are answered or
        dropped on the way (at most `max_skipped` per call, so a flood cannot starve the
        caller's loop).
        """
        if not self.socket.poll(timeout_ms, zmq.POLLIN):
            return None
        for _ in range(max_skipped + 1):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            identity = frames[0].bytes
            try:
                envelope = self.codec.unpack(frames[1:], sender=identity)
            except ProtocolError as exc:
                self._reject(identity, frames[1:], exc)
                continue
            self.stats["received"] += 1
            return Incoming(identity, envelope)
        self.drops.flush_due()
        return None

    def _reject(self, identity: bytes, frames: Sequence[Any], exc: ProtocolError) -> None:
        if not exc.answerable:
            self.stats["dropped"] += 1
            if exc.code == ErrorCode.UNSUPPORTED_VERSION and self._answer_legacy(identity, frames):
                return
            self.drops.record(identity.hex(), exc)
            return
        self.stats["rejected"] += 1
        log.info("rejected message from %s: %s", identity.hex(), exc)
        self.reply(identity, ErrorReply(code=str(exc.code), message=exc.message[:4096],
                                        detail=exc.detail), parent_id=exc.parent_id)

    def _answer_legacy(self, identity: bytes, frames: Sequence[Any]) -> bool:
        """Tell a protocol-1 client, in its own framing, that the majors differ.

        Only small messages (a handshake) are checked, so this costs no more than a header.
        """
        views = [memoryview(frame) for frame in frames]
        if (len(views) < 3 or views[0].nbytes != LEGACY_SIGNATURE_BYTES
                or sum(v.nbytes for v in views) > MAX_LEGACY_BYTES):
            return False
        codec = self.codec
        if not hmac.compare_digest(codec.legacy_signature(views[1:]), views[0].tobytes()):
            return False
        try:
            msg_id = unpack_map(views[1], codec.limits, codec.limits.max_header_bytes,
                                "header").get("msg_id")
        except ProtocolError:
            return False
        version = ".".join(map(str, codec.version))
        reply = ErrorReply(code=str(ErrorCode.UNSUPPORTED_VERSION),
                           message=f"this sidecar speaks protocol {version}; the client speaks "
                           "protocol 1: update the add-on (or the client) to match")
        try:
            packed = codec.pack(reply, parent_id=msg_id if isinstance(msg_id, str) else None)
        except ProtocolError:  # a malformed msg_id: answer without naming it
            packed = codec.pack(reply)
        self.stats["legacy_answered"] += 1
        return self._send(identity, [codec.legacy_signature(packed[1:]), *packed[1:]], reply)

    # ----------------------------------------------------------------- send

    def reply(self, identity: bytes, message: Message, *, parent_id: str | None,
              session: str | None = None, seq: int | None = None) -> bool:
        """Send a reply; False (logged) if the peer is gone or its queue is full."""
        frames = self.codec.pack(message, parent_id=parent_id, session=session, seq=seq)
        return self._send(identity, frames, message)

    def error(self, identity: bytes, code: ErrorCode | str, message: str, *,
              parent_id: str | None, detail: str = "") -> bool:
        """Send an `error` reply with a stable code."""
        return self.reply(identity, ErrorReply(code=str(code), message=message, detail=detail),
                          parent_id=parent_id)

    def push_event(self, identities: Iterable[bytes], message: Message, *, session: str,
                   seq: int, parent_id: str | None = None) -> list[bytes]:
        """Push one event to several peers (signed once); returns those it reached."""
        frames = self.codec.pack(message, parent_id=parent_id, session=session, seq=seq)
        return [i for i in identities if self._send(i, frames, message)]

    def _send(self, identity: bytes, frames: Sequence[Any], message: Message) -> bool:
        try:
            self.socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH (peer gone) or EAGAIN (queue full)
            self.stats["undeliverable"] += 1
            log.warning("could not send %s to %s: %s", message.type_name, identity.hex(), exc)
            return False
        self.stats["sent"] += 1
        return True

    def close(self) -> None:
        self.socket.close(linger=0)

    def __enter__(self) -> ServerEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refuse_live_ipc(endpoint: str) -> None:
    """libzmq replaces an existing socket file on bind: never take over a live server's."""
    path = ipc_path(endpoint)
    if path is None or os.name != "posix" or not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return  # a stale file from a killed server: binding replaces it
    finally:
        probe.close()
    raise zmq.ZMQError(errno.EADDRINUSE, f"{endpoint} is served by another process")


class EventLog:
    """Per-session event numbering and a bounded ring for `events.since` resync."""

    def __init__(self, max_events: int = 1024, max_bytes: int = 256 << 20,
                 start_seq: int = 0) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError(f"max_events and max_bytes must be positive, got "
                             f"{max_events!r}, {max_bytes!r}")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.last_seq = start_seq
        self._ring: deque[tuple[int, Message, str | None, int]] = deque()
        self._bytes = 0

    def append(self, message: Message, parent_id: str | None = None) -> int:
        """Number the event, remember it, and return its sequence number."""
        self.last_seq += 1
        size = _array_bytes(message)
        self._ring.append((self.last_seq, message, parent_id, size))
        self._bytes += size
        while len(self._ring) > self.max_events or (
            self._bytes > self.max_bytes and len(self._ring) > 1
        ):
            self._bytes -= self._ring.popleft()[3]
        return self.last_seq

    def since(self, after_seq: int) -> list[tuple[int, Message, str | None]] | None:
        """Events after `after_seq` in order, or None if some were already forgotten."""
        if after_seq >= self.last_seq:
            return []
        oldest = self._ring[0][0] if self._ring else self.last_seq + 1
        if after_seq + 1 < oldest:
            return None
        return [(seq, msg, parent) for seq, msg, parent, _ in self._ring if seq > after_seq]


def _array_bytes(message: Message) -> int:
    import numpy as np

    return 256 + sum(
        value.nbytes for value in vars(message).values() if isinstance(value, np.ndarray)
    )
