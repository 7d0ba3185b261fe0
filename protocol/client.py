"""Client side: a DEALER socket that never blocks, with requests, events and resync.

Used by the Blender add-on (from one `bpy.app.timers` callback), by the demo and by tests.
Not thread-safe: use one Client from one thread.

Idempotency: a retried request is a *new* message (fresh msg_id, so the replay guard does
not reject it); `request(..., retries=n)` is therefore allowed only for message types marked
idempotent (handshake, heartbeat, session.list/open, job.status/cancel, events.since).
Job submissions are never retried automatically: after a timeout, ask `job.status`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import zmq

from .codec import Codec, Envelope
from .connection import (
    ConnectionInfo,
    check_private_ipc,
    configure_curve_client,
    load_connection_file,
    transport_authenticates,
)
from .droplog import DropLog
from .errors import ErrorCode, ProtocolError, RemoteError, RequestTimeout, VersionMismatch
from .messages import (
    ErrorReply,
    EventsReplayed,
    EventsSince,
    Handshake,
    HandshakeReply,
    Heartbeat,
    Message,
)
from .wire import REQUEST_LIMITS, Limits

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
"""Most unanswered `send()` requests remembered; older ones' late replies are dropped."""


@dataclass
class _EventStream:
    """Ordering state of one session's events."""

    last_seq: int | None = None
    """Highest sequence number delivered in order."""
    held: dict[int, Envelope] = field(default_factory=dict)
    """Events that arrived after a gap, held until the gap is filled."""
    resync_id: str | None = None
    """msg_id of the outstanding events.since request."""
    resync_deadline: float = 0.0
    """When to give up waiting for the resync and deliver what is held."""


ReplyCallback = Callable[[Message], None]
ErrorCallback = Callable[[Exception], None]
EventHandler = Callable[[Message], None]
LinkState = Literal["disconnected", "connecting", "connected", "lost"]
StateListener = Callable[[LinkState, str], None]


@dataclass
class Call:
    """A request in flight: a future settled by `Client.pump()`, with optional callbacks.

    Exactly one of `reply` / `error` is set once it is done: the reply message, or the
    exception (RemoteError for an error reply, RequestTimeout, ConnectionError when the
    link was lost or closed first, VersionMismatch).
    """

    msg_id: str
    type_name: str
    timeout_s: float
    deadline: float
    on_reply: ReplyCallback | None = None
    on_error: ErrorCallback | None = None
    reply: Message | None = None
    error: Exception | None = None

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error is not None


@dataclass(frozen=True)
class KeepAlive:
    """Liveness rules of a conversation (`Client.start`)."""

    heartbeat_interval_s: float = 2.0
    """A heartbeat goes out when nothing was heard for this long."""
    lost_after_s: float = 6.0
    """Silence after which the link is lost (pending calls fail) and reconnecting starts."""
    reconnect_every_s: float = 2.0
    """Pause between reconnect attempts while lost."""
    handshake_timeout_s: float = 10.0
    """How long the first handshake may take before the link is given up."""

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval_s", "lost_after_s", "reconnect_every_s",
                     "handshake_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


class Client:
    """Talks to a sidecar: handshake, requests with timeouts, server-pushed events.

    ``request()`` waits (polling, never a blocking receive) for the reply; ``send()`` +
    ``poll()`` never wait. Events of each session are delivered in sequence order; a gap
    triggers an ``events.since`` resync, and so does ``reconnect()``.

    The conversation API never waits and suits a UI timer: ``start()`` opens the link and
    handshakes in the background, ``call()`` sends a request and returns a `Call` settled
    later (callbacks, timeout), ``on_event()`` routes events (and unclaimed replies) by
    type, and ``pump()`` — called by the timer — receives, settles calls, sends heartbeats,
    notices a silent sidecar, reconnects (re-reading a connection file, so a restarted
    sidecar's new port and key are found) and resyncs every followed session.
    """

    def __init__(
        self,
        connection: ConnectionInfo | str | os.PathLike[str] | None = None,
        *,
        endpoint: str | None = None,
        key: bytes | None = None,
        curve_server_public_key: str | None = None,
        client_name: str = "",
        limits: Limits | None = None,
        context: zmq.Context[Any] | None = None,
        codec: Codec | None = None,
        resync_timeout_s: float = 5.0,
    ) -> None:
        self._connection_file: str | os.PathLike[str] | None = None
        if connection is not None and not isinstance(connection, ConnectionInfo):
            self._connection_file = connection
            connection = load_connection_file(connection)
        if connection is None:
            if endpoint is None or key is None:
                raise ValueError("give a connection (file or ConnectionInfo) or endpoint and key")
            connection = ConnectionInfo(endpoint=endpoint, key=key,
                                        curve_server_public_key=curve_server_public_key)
        self.connection = connection
        self._limits = limits
        self.codec = codec or self._codec_for(connection)
        self.client_name = client_name
        self.resync_timeout_s = resync_timeout_s
        self.client_id = uuid.uuid4().hex.encode("ascii")
        self.server: HandshakeReply | None = None
        self.stats: Counter[str] = Counter()
        self._drops = DropLog(log)
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket[Any] | None = None
        self._inbox: deque[Envelope] = deque()
        self._replies: dict[str, Envelope] = {}
        self._waiting: set[str] = set()
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._streams: dict[str, _EventStream] = {}
        self._version_error: ProtocolError | None = None
        # conversation state (start/call/pump)
        self.state: LinkState = "disconnected"
        self.state_detail = ""
        self.keep_alive = KeepAlive()
        self.last_contact = 0.0
        """time.monotonic() of the last message received."""
        self._calls: dict[str, Call] = {}
        self._handlers: dict[str, EventHandler] = {}
        self._state_listeners: list[StateListener] = []
        self._heartbeat: Call | None = None
        self._handshake: Call | None = None
        self._next_reconnect = 0.0

    # ----------------------------------------------------------------- connection

    @property
    def endpoint(self) -> str:
        return self.connection.endpoint

    @property
    def connected(self) -> bool:
        return self._socket is not None and self.server is not None

    def connect(self, timeout_s: float = 5.0) -> HandshakeReply:
        """Open the socket and handshake; raises RequestTimeout or VersionMismatch."""
        if self.connection.protocol_version[0] != self.codec.version[0]:
            raise VersionMismatch(self._version_text(self.connection.protocol_version))
        if self._socket is None:
            self._open_socket()
        previous = self.server
        self.server = None
        hello = Handshake(client_version=self.codec.version, client_name=self.client_name)
        try:
            reply = self.request(hello, timeout_s=timeout_s)
        except RequestTimeout:
            raise RequestTimeout(
                f"no handshake reply from {self.endpoint} within {timeout_s:g} s: "
                "is the sidecar running, and is the endpoint/key right?"
            ) from None
        if not isinstance(reply, HandshakeReply):
            raise ProtocolError(ErrorCode.INVALID_FIELD,
                                f"handshake answered with {reply.type_name!r}")
        if reply.server_version[0] != self.codec.version[0]:
            raise VersionMismatch(self._version_text(reply.server_version))
        if reply.buffer_integrity != self.codec.buffer_integrity:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"the sidecar authenticates frames by "
                                f"{reply.buffer_integrity!r}, this client by "
                                f"{self.codec.buffer_integrity!r} for {self.endpoint}: connect "
                                "with the endpoint and CURVE key of its connection file")
        if previous is not None and previous.server_id != reply.server_id:
            log.info("sidecar restarted (%s -> %s)", previous.server_id, reply.server_id)
        self.server = reply
        return reply

    def reconnect(self, timeout_s: float = 5.0) -> HandshakeReply:
        """Fresh socket, handshake, then resync every followed session."""
        self._close_socket()
        reply = self.connect(timeout_s)
        self._resync_all()
        return reply

    def close(self) -> None:
        """Close the socket at once (linger 0); pending requests are abandoned."""
        self._close_socket()
        self.server = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_socket(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, self.client_id)
        sock.setsockopt(zmq.MAXMSGSIZE, self.codec.limits.socket_max_message)
        if not self.codec.buffer_digests:
            check_private_ipc(self.endpoint)  # no digests: only a private socket may carry that
        if self.connection.curve_server_public_key:
            configure_curve_client(sock, self.connection.curve_server_public_key)
        sock.connect(self.endpoint)
        self._socket = sock

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _version_text(self, server_version: tuple[int, int] | None) -> str:
        mine = ".".join(map(str, self.codec.version))
        theirs = "a different major version" if server_version is None else (
            ".".join(map(str, server_version)))
        return (f"sidecar at {self.endpoint} speaks protocol {theirs}, this client {mine}: "
                "update the add-on or the sidecar so the major versions match")

    # ----------------------------------------------------------------- requests

    def send(self, message: Message, *, session: str | None = None) -> str:
        """Queue a request without waiting; its reply comes out of `poll()`. Returns msg_id."""
        msg_id = self._send(message, session)
        self._pending[msg_id] = None
        while len(self._pending) > MAX_PENDING:  # replies that never came: stop waiting
            self._pending.popitem(last=False)
        return msg_id

    def request(self, message: Message, *, timeout_s: float = 10.0, retries: int = 0,
                session: str | None = None) -> Message:
        """Send and wait for the reply (polling); `error` replies raise RemoteError."""
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if retries and not message.idempotent:
            raise ValueError(f"retries={retries} refused: {message.type_name!r} is not "
                             "idempotent (check job.status after a timeout instead)")
        for attempt in range(retries + 1):
            msg_id = self._send(message, session)
            reply = self._wait_reply(msg_id, time.monotonic() + timeout_s)
            if reply is not None:
                return self._unwrap(reply)
            self.stats["timeouts"] += 1
            if attempt < retries:
                # A fresh socket discards whatever is stuck in the old one's queue.
                self._close_socket()
                self._open_socket()
                self._resync_all()
        raise RequestTimeout(f"no reply to {message.type_name!r} from {self.endpoint} within "
                             f"{timeout_s:g} s ({retries + 1} attempt(s))")

    def _send(self, message: Message, session: str | None) -> str:
        if self._socket is None:
            self._open_socket()
        assert self._socket is not None
        msg_id = uuid.uuid4().hex
        frames = self.codec.pack(message, session=session, msg_id=msg_id,
                                 sender=self.client_id.decode("ascii"))
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise RequestTimeout(f"send queue to {self.endpoint} is full") from None
        self.stats["sent"] += 1
        return msg_id

    def _wait_reply(self, msg_id: str, deadline: float) -> Envelope | None:
        self._waiting.add(msg_id)
        try:
            while True:
                if msg_id in self._replies:
                    return self._replies.pop(msg_id)
                if self._version_error is not None:
                    error, self._version_error = self._version_error, None
                    raise VersionMismatch(self._version_text(None) + f" ({error.message})")
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0:
                    return None
                self._receive(min(remaining_ms, 50))
        finally:
            self._waiting.discard(msg_id)

    def _unwrap(self, reply: Envelope) -> Message:
        message = reply.message
        if isinstance(message, ErrorReply):
            if message.code == ErrorCode.UNSUPPORTED_VERSION:
                raise VersionMismatch(self._version_text(None) + f" ({message.message})")
            raise RemoteError(message.code, message.message, message.detail)
        return message

    # ----------------------------------------------------------------- receiving

    def poll(self, timeout_ms: int = 0, max_messages: int = 1000) -> list[Envelope]:
        """Replies to `send()` and events received so far, in order (never blocks longer
        than `timeout_ms`). Raises VersionMismatch if the server speaks another major."""
        self._receive(timeout_ms, max_messages)
        if self._version_error is not None:
            # A reply we cannot even read: say why instead of letting requests time out.
            error, self._version_error = self._version_error, None
            raise VersionMismatch(self._version_text(None) + f" ({error.message})")
        self._expire_resyncs()
        delivered = list(self._inbox)
        self._inbox.clear()
        return delivered

    def _receive(self, timeout_ms: int, max_messages: int = 1000) -> None:
        sock = self._socket
        if sock is None or not sock.poll(timeout_ms, zmq.POLLIN):
            return
        for _ in range(max_messages):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                envelope = self.codec.unpack(frames, is_fresh_reply=self._awaits_reply)
            except ProtocolError as exc:
                self.stats["dropped"] += 1
                self._drops.record(self.endpoint, exc)
                if exc.authenticated and exc.code == ErrorCode.UNSUPPORTED_VERSION:
                    self._version_error = exc
                continue
            self.stats["received"] += 1
            self.last_contact = time.monotonic()
            self._route(envelope)

    def _awaits_reply(self, parent_id: str) -> bool:
        return parent_id in self._waiting or parent_id in self._pending or parent_id in self._calls

    def _route(self, envelope: Envelope) -> None:
        header = envelope.header
        if header.seq is not None and header.session is not None:
            self._on_event(header.session, header.seq, envelope)
            return
        parent = header.parent_id
        if parent in self._waiting:
            self._replies[parent] = envelope
        elif parent in self._calls:
            self._settle(self._calls.pop(parent), envelope.message)
        elif isinstance(envelope.message, EventsReplayed) and self._is_resync_reply(envelope):
            self._finish_resync(envelope)
        elif parent in self._pending:
            del self._pending[parent]
            self._inbox.append(envelope)
        else:
            self.stats["orphan_replies"] += 1
            log.info("dropped %s answering unknown or expired request %s", header.type, parent)

    # ----------------------------------------------------------------- events and resync

    def follow(self, session_id: str, last_seq: int = 0) -> None:
        """Track a session's events from `last_seq` (e.g. a session summary's last_seq)."""
        stream = self._streams.setdefault(session_id, _EventStream())
        stream.last_seq = last_seq

    def last_seq(self, session_id: str) -> int | None:
        """Highest in-order event sequence number delivered for a session."""
        stream = self._streams.get(session_id)
        return None if stream is None else stream.last_seq

    def resync(self, session_id: str) -> str:
        """Ask the server to re-send a session's events after the last one delivered."""
        stream = self._streams.setdefault(session_id, _EventStream())
        after = stream.last_seq or 0
        stream.resync_id = self._send(EventsSince(session_id=session_id, after_seq=after), None)
        stream.resync_deadline = time.monotonic() + self.resync_timeout_s
        self.stats["resyncs"] += 1
        return stream.resync_id

    def _resync_all(self) -> None:
        for session_id, stream in self._streams.items():
            if stream.last_seq is not None:
                self.resync(session_id)

    def _on_event(self, session: str, seq: int, envelope: Envelope) -> None:
        stream = self._streams.setdefault(session, _EventStream())
        if stream.last_seq is None:
            stream.last_seq = seq - 1  # first event seen: no history to ask for
        if seq <= stream.last_seq or seq in stream.held:
            self.stats["duplicate_events"] += 1
            return
        stream.held[seq] = envelope
        self._deliver_in_order(stream)
        if stream.held and stream.resync_id is None:
            self.stats["gaps"] += 1
            self.resync(session)

    def _deliver_in_order(self, stream: _EventStream) -> None:
        assert stream.last_seq is not None
        while stream.last_seq + 1 in stream.held:
            stream.last_seq += 1
            self._inbox.append(stream.held.pop(stream.last_seq))

    def _is_resync_reply(self, envelope: Envelope) -> bool:
        message = envelope.message
        assert isinstance(message, EventsReplayed)
        stream = self._streams.get(message.session_id)
        return stream is not None and stream.resync_id == envelope.header.parent_id

    def _finish_resync(self, envelope: Envelope) -> None:
        message = envelope.message
        assert isinstance(message, EventsReplayed)
        stream = self._streams[message.session_id]
        stream.resync_id = None
        assert stream.last_seq is not None
        # Re-sent events came before this reply on the same pipe and were delivered already.
        # Anything still missing is gone for good (ring overflow), or the server restarted
        # and numbers from scratch: adopt its number either way.
        if not message.complete or message.last_seq < stream.last_seq:
            stream.last_seq = message.last_seq
        else:
            stream.last_seq = max(stream.last_seq, message.last_seq)
        self._inbox.append(envelope)  # the app learns a resync happened (and if complete)
        self._flush_held(stream)  # held events are newer than anything lost: deliver them

    def _expire_resyncs(self) -> None:
        now = time.monotonic()
        for stream in self._streams.values():
            if stream.resync_id is not None and now > stream.resync_deadline:
                self.stats["resync_timeouts"] += 1
                stream.resync_id = None
                self._flush_held(stream)

    def _flush_held(self, stream: _EventStream) -> None:
        for seq in sorted(stream.held):
            self._inbox.append(stream.held.pop(seq))
            stream.last_seq = max(stream.last_seq or 0, seq)

    # ----------------------------------------------------------------- conversation

    def on_event(self, type_name: str, handler: EventHandler) -> None:
        """Route events of `type_name` (and replies to `call()`s made without `on_reply`)
        to `handler(message)` from `pump()`; one handler per type, a new one replaces it."""
        self._handlers[type_name] = handler

    def on_state(self, listener: StateListener) -> None:
        """Call `listener(state, detail)` from `start()`/`pump()`/`stop()` on every change."""
        self._state_listeners.append(listener)

    def start(self, keep_alive: KeepAlive | None = None) -> Call:
        """Open the link without waiting: the handshake is answered in a later `pump()`.

        State goes "connecting" → "connected" (or "disconnected" with the reason when the
        sidecar does not answer within `handshake_timeout_s` or speaks another major).
        """
        self.keep_alive = keep_alive or self.keep_alive
        self._close_socket()
        self._set_state("connecting", f"waiting for {self.endpoint}")
        return self._send_handshake(self.keep_alive.handshake_timeout_s)

    def stop(self, reason: str = "closed") -> None:
        """End the conversation on purpose: pending calls fail, state "disconnected"."""
        self._fail_calls(ConnectionError(reason))
        self.close()
        self._set_state("disconnected", reason)

    def call(
        self,
        message: Message,
        *,
        on_reply: ReplyCallback | None = None,
        on_error: ErrorCallback | None = None,
        timeout_s: float = 10.0,
        session: str | None = None,
    ) -> Call:
        """Send a request now, never wait: the returned `Call` is settled by `pump()`.

        Raises ConnectionError when the link is down or the send queue is full (nothing
        was sent). Without `on_reply`, a reply goes to the `on_event` handler of its type.
        """
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if self.state in ("disconnected", "lost") and message.type_name != "handshake":
            raise ConnectionError(f"not connected to a sidecar ({self.state_detail})")
        try:
            msg_id = self._send(message, session)
        except RequestTimeout as exc:
            raise ConnectionError(str(exc)) from None
        call = Call(msg_id, message.type_name, timeout_s, time.monotonic() + timeout_s,
                    on_reply, on_error)
        self._calls[msg_id] = call
        return call

    def pump(self, max_messages: int = 1000) -> list[Envelope]:
        """One non-blocking turn of the conversation (for a UI timer).

        Receives what has arrived, settles calls (callbacks run here), routes events to
        their handlers, fails calls past their deadline, keeps the link alive and
        reconnects a lost one. Returns the events and replies no handler claimed.
        """
        try:
            self._receive(0, max_messages)
        except zmq.ZMQError as exc:  # a broken socket is a lost link, not a crash
            self._lose(f"receive failed: {exc}")
        if self._version_error is not None:
            error, self._version_error = self._version_error, None
            self._fail_calls(VersionMismatch(self._version_text(None) + f" ({error.message})"))
        now = time.monotonic()
        self._expire_calls(now)
        self._expire_resyncs()
        self._keep_link(now)
        delivered = list(self._inbox)
        self._inbox.clear()
        return [env for env in delivered if not self._dispatch(env)]

    @property
    def pending_calls(self) -> int:
        """Calls sent and not yet settled."""
        return len(self._calls)

    # --- conversation internals

    def _set_state(self, state: LinkState, detail: str) -> None:
        changed = (state, detail) != (self.state, self.state_detail)
        self.state, self.state_detail = state, detail
        if changed:
            for listener in list(self._state_listeners):
                self._safely(listener, state, detail)

    def _safely(self, fn: Callable[..., None], *args: Any) -> None:
        """Run an application callback; one that raises must not stop the others."""
        try:
            fn(*args)
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("callback %r failed", fn)

    def _send_handshake(self, timeout_s: float) -> Call:
        hello = Handshake(client_version=self.codec.version, client_name=self.client_name)
        self._handshake = self.call(hello, on_reply=self._on_handshake,
                                    on_error=self._on_handshake_failed, timeout_s=timeout_s)
        return self._handshake

    def _on_handshake(self, reply: Message) -> None:
        self._handshake = None
        assert isinstance(reply, HandshakeReply)
        if reply.server_version[0] != self.codec.version[0]:
            self.close()
            self._set_state("disconnected", self._version_text(reply.server_version))
            return
        if self.server is not None and self.server.server_id != reply.server_id:
            log.info("sidecar restarted (%s -> %s)", self.server.server_id, reply.server_id)
        self.server = reply
        self.last_contact = time.monotonic()
        self._resync_all()
        self._set_state("connected", "")

    def _on_handshake_failed(self, error: Exception) -> None:
        self._handshake = None
        self._close_socket()
        if self.state == "lost":  # keep trying: the next attempt builds a fresh socket
            self._set_state("lost", f"still unreachable: {error}")
            return
        self.server = None
        self._set_state("disconnected", str(error))

    def _settle(self, call: Call, message: Message) -> None:
        if isinstance(message, ErrorReply):
            if message.code == ErrorCode.UNSUPPORTED_VERSION:
                self._fail(call, VersionMismatch(self._version_text(None)
                                                 + f" ({message.message})"))
            else:
                self._fail(call, RemoteError(message.code, message.message, message.detail))
            return
        call.reply = message
        if call.on_reply is not None:
            self._safely(call.on_reply, message)
        elif message.type_name in self._handlers:
            self._safely(self._handlers[message.type_name], message)

    def _fail(self, call: Call, error: Exception) -> None:
        call.error = error
        if call.on_error is not None:
            self._safely(call.on_error, error)
        else:
            log.warning("%s failed: %s", call.type_name, error)

    def _fail_calls(self, error: Exception) -> None:
        calls, self._calls = list(self._calls.values()), {}
        self._heartbeat = None
        for call in calls:
            self._fail(call, error)

    def _expire_calls(self, now: float) -> None:
        for msg_id, call in list(self._calls.items()):
            if now > call.deadline:
                del self._calls[msg_id]
                self.stats["timeouts"] += 1
                self._fail(call, RequestTimeout(f"no reply to {call.type_name!r} from "
                                                f"{self.endpoint} within {call.timeout_s:g} s"))

    def _keep_link(self, now: float) -> None:
        rules = self.keep_alive
        if self.state == "connected":
            if now - self.last_contact > rules.lost_after_s:
                self._lose(f"silent for {now - self.last_contact:.1f} s")
            elif self._heartbeat is None and now - self.last_contact >= rules.heartbeat_interval_s:
                self._heartbeat = self.call(Heartbeat(), on_reply=self._on_heartbeat,
                                            on_error=self._on_heartbeat_failed,
                                            timeout_s=rules.lost_after_s)
        elif self.state == "lost" and self._handshake is None and now >= self._next_reconnect:
            self._reconnect_attempt(now)

    def _on_heartbeat(self, reply: Message) -> None:
        self._heartbeat = None
        handler = self._handlers.get(reply.type_name)
        if handler is not None:
            self._safely(handler, reply)

    def _on_heartbeat_failed(self, _error: Exception) -> None:
        self._heartbeat = None  # silence is judged by last_contact, not by one probe

    def _lose(self, reason: str) -> None:
        self._fail_calls(ConnectionError(f"connection lost ({reason})"))
        self._close_socket()
        self._next_reconnect = time.monotonic()
        self._set_state("lost", reason)

    def _reconnect_attempt(self, now: float) -> None:
        rules = self.keep_alive
        self._next_reconnect = now + max(rules.reconnect_every_s, rules.lost_after_s)
        if self._connection_file is not None:
            try:  # a restarted sidecar writes a new port and key
                self._use_connection(load_connection_file(self._connection_file))
            except (OSError, ValueError) as exc:
                self._set_state("lost", f"cannot reconnect yet: {exc}")
                return
        self.last_contact = now
        # a restarted sidecar answers at once; waiting longer than the loss delay adds lag
        self._send_handshake(min(rules.handshake_timeout_s, rules.lost_after_s))

    def _use_connection(self, info: ConnectionInfo) -> None:
        if info != self.connection:
            self._close_socket()
            self.connection = info
            self.codec = self._codec_for(info)

    def _codec_for(self, info: ConnectionInfo) -> Codec:
        by_transport = transport_authenticates(info.endpoint, bool(info.curve_server_public_key))
        return Codec(info.key, limits=self._limits, send_limits=REQUEST_LIMITS,
                     buffer_digests=not by_transport)

    def _dispatch(self, envelope: Envelope) -> bool:
        handler = self._handlers.get(envelope.message.type_name)
        if handler is None:
            return False
        self._safely(handler, envelope.message)
        return True

