"""Event streams: per-session sequence numbers, a bounded ring for resync, subscribers.

Each session has a `protocol.server.EventLog` (numbering from 1, ring bounded by count and
bytes). Events are pushed to every client subscribed to the session (it created, opened or
resynced it, or submitted one of its jobs); a client the socket can no longer reach
(ROUTER_MANDATORY → EHOSTUNREACH) is dropped from every subscription.

Sequence numbers keep increasing across sidecar restarts: a mark is saved in session.json
every `MARK_EVERY` events and at shutdown, and a restarted sidecar starts after
`mark + MARK_EVERY`, above anything the previous run can have sent. A client resyncing with
a number from before the restart then gets `complete=False` and re-opens the session.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.messages import Message
from protocol.server import EventLog

MARK_EVERY = 256
"""Events between two saved sequence marks."""

Pusher = Callable[[list[bytes], Message, str, int, "str | None"], list[bytes]]
"""Sends one event to identities; returns the identities it reached."""


class EventHub:
    """All sessions' event logs and subscriber sets."""

    def __init__(
        self,
        push: Pusher,
        *,
        load_mark: Callable[[str], int | None],
        save_mark: Callable[[str, int], None],
        max_events: int = 1024,
        max_bytes: int = 256 << 20,
    ) -> None:
        self._push = push
        self._load_mark = load_mark
        self._save_mark = save_mark
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._logs: dict[str, EventLog] = {}
        self._subscribers: dict[str, set[bytes]] = {}

    def log(self, session_id: str) -> EventLog:
        log = self._logs.get(session_id)
        if log is None:
            mark = self._load_mark(session_id)
            start = 0 if mark is None else mark + MARK_EVERY
            log = EventLog(self._max_events, self._max_bytes, start_seq=start)
            self._logs[session_id] = log
        return log

    def last_seq(self, session_id: str) -> int:
        return self.log(session_id).last_seq

    def publish(self, session_id: str, message: Message, parent_id: str | None = None) -> int:
        """Number the event, keep it for resync and push it to the session's subscribers."""
        log = self.log(session_id)
        seq = log.append(message, parent_id)
        if seq % MARK_EVERY == 0:
            self._save_mark(session_id, seq)
        targets = sorted(self._subscribers.get(session_id, ()))
        if targets:
            reached = set(self._push(targets, message, session_id, seq, parent_id))
            for identity in targets:
                if identity not in reached:
                    self.drop_subscriber(identity)
        return seq

    def replay(self, identity: bytes, session_id: str, after_seq: int) -> tuple[int, bool]:
        """Re-send the events after `after_seq` to one client: (count re-sent, complete)."""
        log = self.log(session_id)
        if after_seq > log.last_seq:
            return 0, False  # numbers this run never issued: the client saw a previous run
        missed = log.since(after_seq)
        if missed is None:
            return 0, False
        for seq, message, parent_id in missed:
            if not self._push([identity], message, session_id, seq, parent_id):
                self.drop_subscriber(identity)
                return 0, False
        return len(missed), True

    def save_marks(self) -> None:
        """Persist every session's last number (at shutdown)."""
        for session_id, log in self._logs.items():
            if log.last_seq:
                self._save_mark(session_id, log.last_seq)

    # ----- subscribers -------------------------------------------------------------------
    def subscribe(self, session_id: str, identity: bytes) -> None:
        self._subscribers.setdefault(session_id, set()).add(identity)

    def drop_subscriber(self, identity: bytes) -> None:
        for members in self._subscribers.values():
            members.discard(identity)

    def subscribers(self, session_id: str) -> list[bytes]:
        return sorted(self._subscribers.get(session_id, ()))

    def forget_session(self, session_id: str) -> None:
        self._logs.pop(session_id, None)
        self._subscribers.pop(session_id, None)
