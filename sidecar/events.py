"""Per-session event streams with sequence numbers, a bounded ring for resync, subscribers.

Every event of a session gets the next sequence number of that session (1, 2, 3, ...). A
client that lost its connection asks for the events after the last number it saw; if they
fell out of the ring, or the sidecar restarted (a new `epoch`), the answer says a full
resync (a fresh `session.open`) is needed instead of silently skipping events.

Preview images are large: the ring keeps their metadata only; the newest preview of each job
is kept separately and can be fetched again.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

GLOBAL_CHANNEL = ""
"""Channel of events that belong to no session (e.g. sidecar-wide notices)."""


@dataclass(frozen=True)
class Event:
    """One event of one session's stream."""

    session_id: str
    """Session the event belongs to ("" for sidecar-wide events)."""
    seq: int
    """Position in the session's stream, from 1, without gaps."""
    kind: str
    """What happened: "job.queued", "job.progress", "job.finished", ..."""
    data: dict
    """Small msgpack-able details."""
    time: float = field(default_factory=time.time)
    """Wall-clock seconds since the epoch when it was recorded."""


@dataclass(frozen=True)
class Backlog:
    """Answer to `since(seq)`: the missed events, or a request to resync from scratch."""

    epoch: str
    events: list[Event]
    resync_required: bool
    last_seq: int


class EventLog:
    """Sequence numbering, ring buffers and subscriber sets for every session."""

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.epoch = uuid.uuid4().hex
        self._rings: dict[str, deque[Event]] = {}
        self._last_seq: dict[str, int] = {}
        self._subscribers: dict[str, set[bytes]] = {}

    def append(self, session_id: str, kind: str, data: dict) -> Event:
        seq = self._last_seq.get(session_id, 0) + 1
        self._last_seq[session_id] = seq
        event = Event(session_id, seq, kind, data)
        ring = self._rings.setdefault(session_id, deque(maxlen=self.capacity))
        ring.append(event)
        return event

    def last_seq(self, session_id: str) -> int:
        return self._last_seq.get(session_id, 0)

    def since(self, session_id: str, seq: int, epoch: str | None = None) -> Backlog:
        """Events with sequence number > `seq` (for a client that saw up to `seq`)."""
        last = self.last_seq(session_id)
        if epoch is not None and epoch != self.epoch:
            return Backlog(self.epoch, [], True, last)
        if seq < 0 or seq > last:
            return Backlog(self.epoch, [], True, last)
        ring = self._rings.get(session_id, deque())
        missed = [event for event in ring if event.seq > seq]
        complete = (not missed and seq == last) or (missed and missed[0].seq == seq + 1)
        return Backlog(self.epoch, missed if complete else [], not complete, last)

    # ----- subscribers -------------------------------------------------------------------
    def subscribe(self, session_id: str, identity: bytes) -> None:
        self._subscribers.setdefault(session_id, set()).add(identity)

    def unsubscribe(self, session_id: str, identity: bytes) -> None:
        self._subscribers.get(session_id, set()).discard(identity)

    def drop_subscriber(self, identity: bytes) -> None:
        """Forget a client everywhere (it vanished: the socket reported it unreachable)."""
        for members in self._subscribers.values():
            members.discard(identity)

    def subscribers(self, session_id: str) -> list[bytes]:
        return sorted(self._subscribers.get(session_id, set()))

    def forget_session(self, session_id: str) -> Iterable[bytes]:
        """Drop a deleted session's ring and subscribers; returns who was subscribed."""
        self._rings.pop(session_id, None)
        return self._subscribers.pop(session_id, set())
