"""A minimal protocol server for tests: a ServerEndpoint served from a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from protocol import (
    PROTOCOL_VERSION,
    EventLog,
    EventsReplayed,
    EventsSince,
    Handshake,
    HandshakeReply,
    Heartbeat,
    HeartbeatReply,
    Incoming,
    Message,
    Ok,
    ServerEndpoint,
)

Handler = Callable[["ThreadedServer", Incoming], Message | None]


class ThreadedServer:
    """Answers handshake, heartbeat and events.since; anything else gets `ok` (or a handler)."""

    def __init__(self, key: bytes, *, server_id: str = "srv-1",
                 bind: str = "tcp://127.0.0.1:0", **endpoint_kwargs: Any) -> None:
        self.endpoint = ServerEndpoint(bind, key, **endpoint_kwargs)
        self.server_id = server_id
        self.handlers: dict[type, Handler] = {}
        self.logs: dict[str, EventLog] = {}
        self.seen: list[Incoming] = []
        self.peers: set[bytes] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return self.endpoint.endpoint

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                incoming = self.endpoint.recv(0)
                if incoming is not None:
                    self._answer(incoming)
            if incoming is None:
                time.sleep(0.002)

    def _answer(self, incoming: Incoming) -> None:
        self.seen.append(incoming)
        self.peers.add(incoming.identity)
        message = incoming.message
        handler = self.handlers.get(type(message))
        if handler is not None:
            reply = handler(self, incoming)
        elif isinstance(message, Handshake):
            reply = HandshakeReply(server_version=PROTOCOL_VERSION, server_id=self.server_id,
                                   device="cpu",
                                   buffer_integrity=self.endpoint.buffer_integrity)
        elif isinstance(message, Heartbeat):
            reply = HeartbeatReply(server_time=time.time())
        elif isinstance(message, EventsSince):
            reply = self._replay(incoming, message)
        else:
            reply = Ok(detail=message.type_name)
        if reply is not None:
            self.endpoint.reply(incoming.identity, reply, parent_id=incoming.envelope.msg_id)

    def _replay(self, incoming: Incoming, request: EventsSince) -> EventsReplayed:
        log = self.logs.setdefault(request.session_id, EventLog())
        missed = log.since(request.after_seq)
        for seq, event, parent in missed or []:
            self.endpoint.push_event([incoming.identity], event, session=request.session_id,
                                     seq=seq, parent_id=parent)
        return EventsReplayed(session_id=request.session_id, after_seq=request.after_seq,
                              last_seq=log.last_seq, replayed=len(missed or []),
                              complete=missed is not None)

    def publish(self, session: str, event: Message, *, deliver: bool = True) -> int:
        """Number an event; push it to every known peer unless `deliver` is False (a loss)."""
        with self._lock:
            log = self.logs.setdefault(session, EventLog(max_events=4))
            seq = log.append(event)
            if deliver:
                self.endpoint.push_event(self.peers, event, session=session, seq=seq)
            return seq

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.endpoint.close()
