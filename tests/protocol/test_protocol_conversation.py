"""Client's non-blocking conversation: start, call, pump, events, heartbeat, loss, reconnect."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from protocol_testserver import ThreadedServer

from protocol import (
    Client,
    ConnectionInfo,
    Heartbeat,
    JobProgress,
    KeepAlive,
    Ok,
    RemoteError,
    RequestTimeout,
    SessionOpen,
    write_connection_file,
)
from protocol.messages import ErrorReply

KEY = b"k" * 32


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    srv = ThreadedServer(KEY)
    yield srv
    srv.close()


def pump_until(client: Client, done: Callable[[], bool], limit_s: float = 5.0) -> list:
    """Pump like a UI timer would (every 5 ms) until `done()`; returns unclaimed envelopes."""
    left: list = []
    end = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < end, f"not done within {limit_s} s (state {client.state})"
        left += client.pump()
        time.sleep(0.005)
    return left


def started(address: str, **rules: float) -> tuple[Client, list[tuple[str, str]]]:
    client = Client(endpoint=address, key=KEY)
    states: list[tuple[str, str]] = []
    client.on_state(lambda state, detail: states.append((state, detail)))
    t0 = time.perf_counter()
    client.start(KeepAlive(**rules))
    assert time.perf_counter() - t0 < 0.05  # start never waits for the sidecar
    return client, states


def test_start_handshakes_in_the_background_and_calls_settle_by_callback(server) -> None:
    client, states = started(server.address)
    assert client.state == "connecting"
    pump_until(client, lambda: client.state == "connected")
    assert [s for s, _ in states] == ["connecting", "connected"]
    assert client.server is not None and client.server.server_id == "srv-1"

    replies: list = []
    call = client.call(SessionOpen(session_id="s1"), on_reply=replies.append)
    assert not call.done and client.pending_calls == 1
    pump_until(client, lambda: call.done)
    assert isinstance(call.reply, Ok) and replies == [call.reply]
    assert call.error is None and client.pending_calls == 0
    client.stop()
    assert client.state == "disconnected"


def test_error_replies_and_timeouts_reach_on_error(server) -> None:
    def refuse(srv: ThreadedServer, incoming):
        return ErrorReply(code="not_found", message="no session s9")

    server.handlers[SessionOpen] = refuse
    client, _ = started(server.address)
    pump_until(client, lambda: client.state == "connected")
    errors: list[Exception] = []
    refused = client.call(SessionOpen(session_id="s9"), on_error=errors.append)
    pump_until(client, lambda: refused.done)
    assert isinstance(refused.error, RemoteError) and refused.error.code == "not_found"

    server.handlers[SessionOpen] = lambda srv, incoming: None  # never answered
    silent = client.call(SessionOpen(session_id="s1"), on_error=errors.append, timeout_s=0.2)
    t0 = time.monotonic()
    pump_until(client, lambda: silent.done)
    assert 0.2 <= time.monotonic() - t0 < 1.0
    assert isinstance(silent.error, RequestTimeout) and "within 0.2 s" in str(silent.error)
    assert errors == [refused.error, silent.error]
    client.stop()


def test_events_are_routed_by_type_and_unclaimed_ones_returned(server) -> None:
    client, _ = started(server.address)
    pump_until(client, lambda: client.state == "connected")
    client.call(SessionOpen(session_id="s1"))  # the server learns this peer
    pump_until(client, lambda: client.pending_calls == 0)
    progress: list[JobProgress] = []
    client.on_event("job.progress", progress.append)
    client.follow("s1", 0)
    server.publish("s1", JobProgress(job_id="j1", step=1, total=4))
    server.publish("s1", Ok(detail="not routed"))
    left = pump_until(client, lambda: len(progress) == 1 and client.last_seq("s1") == 2)
    assert progress[0].step == 1
    assert [env.message.type_name for env in left] == ["ok"]
    client.stop()


def test_a_raising_handler_does_not_stop_the_others(server) -> None:
    client, _ = started(server.address)
    pump_until(client, lambda: client.state == "connected")
    seen: list[str] = []

    def broken(_reply) -> None:
        raise RuntimeError("handler bug")

    first = client.call(SessionOpen(session_id="s1"), on_reply=broken)
    second = client.call(SessionOpen(session_id="s2"), on_reply=lambda r: seen.append("s2"))
    pump_until(client, lambda: first.done and second.done)
    assert seen == ["s2"] and client.stats["callback_errors"] == 1
    client.stop()


def test_no_sidecar_ends_in_disconnected_with_the_reason() -> None:
    client, states = started("tcp://127.0.0.1:9", handshake_timeout_s=0.3)
    pump_until(client, lambda: client.state == "disconnected")
    assert states[-1][0] == "disconnected" and "handshake" in states[-1][1]
    with pytest.raises(ConnectionError, match="not connected"):
        client.call(SessionOpen(session_id="s1"))


def test_heartbeats_keep_an_idle_link_and_silence_loses_it(server) -> None:
    client, states = started(server.address, heartbeat_interval_s=0.1, lost_after_s=0.6,
                             reconnect_every_s=0.2)
    pump_until(client, lambda: client.state == "connected")
    heartbeats = lambda: sum(isinstance(i.message, Heartbeat) for i in server.seen)  # noqa: E731
    end = time.monotonic() + 0.8  # longer than lost_after_s: only heartbeats keep it
    pump_until(client, lambda: time.monotonic() > end, 2.0)
    assert client.state == "connected" and heartbeats() >= 3

    server.handlers[Heartbeat] = lambda srv, incoming: None  # a hung sidecar
    pending = client.call(SessionOpen(session_id="s1"))
    server.handlers[SessionOpen] = lambda srv, incoming: None
    t0 = time.monotonic()
    pump_until(client, lambda: client.state == "lost", 3.0)
    assert 0.5 <= time.monotonic() - t0 < 1.5
    assert isinstance(pending.error, ConnectionError)  # pending calls fail at once

    del server.handlers[Heartbeat]  # it answers again: the link comes back by itself
    pump_until(client, lambda: client.state == "connected", 5.0)
    assert [s for s, _ in states][-2:] == ["lost", "connected"]
    client.stop()


def test_reconnect_rereads_the_connection_file_and_resyncs(tmp_path: Path) -> None:
    first = ThreadedServer(KEY, server_id="first")
    path = write_connection_file(tmp_path / "connection.json",
                                 ConnectionInfo(endpoint=first.address, key=KEY))
    client = Client(path)
    client.start(KeepAlive(heartbeat_interval_s=0.1, lost_after_s=0.4, reconnect_every_s=0.1))
    pump_until(client, lambda: client.state == "connected")
    client.follow("s1", 0)
    first.close()  # the sidecar dies; a new one starts on another port with another key
    pump_until(client, lambda: client.state == "lost", 3.0)
    second_key = b"n" * 32
    second = ThreadedServer(second_key, server_id="second")
    write_connection_file(path, ConnectionInfo(endpoint=second.address, key=second_key))
    try:
        pump_until(client, lambda: client.state == "connected", 5.0)
        assert client.server is not None and client.server.server_id == "second"
        assert client.endpoint == second.address
        pump_until(client, lambda: any(i.message.type_name == "events.since"
                                       for i in second.seen), 2.0)  # resubscribed
    finally:
        client.stop()
        second.close()
