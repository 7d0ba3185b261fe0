"""Client: handshake, timeouts, version mismatch, events in order, gap resync, CURVE."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from protocol_testserver import ThreadedServer

from protocol import (
    PROTOCOL_VERSION,
    Client,
    Codec,
    ConnectionFileError,
    ConnectionInfo,
    EventsReplayed,
    Handshake,
    HandshakeReply,
    InsecureBindError,
    JobPreview,
    JobProgress,
    JobRunTurn,
    Ok,
    RemoteError,
    RequestTimeout,
    ServerEndpoint,
    SessionOpen,
    VersionMismatch,
    curve_available,
    curve_keypair,
    is_loopback,
    load_connection_file,
    write_connection_file,
)

KEY = b"c" * 32


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    srv = ThreadedServer(KEY)
    yield srv
    srv.close()


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[Client]:
    with Client(endpoint=server.address, key=KEY, client_name="tests",
                resync_timeout_s=2.0) as c:
        c.connect(timeout_s=5)
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_until(client: Client, count: int, timeout_s: float = 5.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += client.poll(timeout_ms=20)
    return got


# --------------------------------------------------------------------------- connect


def test_handshake_reports_the_server(client: Client) -> None:
    assert isinstance(client.server, HandshakeReply)
    assert client.server.server_version == PROTOCOL_VERSION and client.server.device == "cpu"
    assert client.connected


def test_timeout_when_nobody_listens_is_bounded_and_clear() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Client(endpoint=endpoint, key=KEY) as c:
        start = time.monotonic()
        with pytest.raises(RequestTimeout, match="is the sidecar running") as info:
            c.connect(timeout_s=0.4)
        elapsed = time.monotonic() - start
    assert 0.35 < elapsed < 1.5
    assert endpoint in str(info.value)


def test_retries_are_bounded_and_use_fresh_ids() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Client(endpoint=endpoint, key=KEY) as c:
        start = time.monotonic()
        with pytest.raises(RequestTimeout, match="3 attempt"):
            c.request(SessionOpen(session_id="s"), timeout_s=0.2, retries=2)
        assert time.monotonic() - start < 1.5
        assert c.stats["sent"] == 3 and c.stats["timeouts"] == 3


def test_retrying_a_job_submission_is_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="not idempotent"):
        client.request(JobRunTurn(session_id="s", instruction="x"), retries=1)


def test_client_with_other_major_version_is_refused(server: ThreadedServer) -> None:
    codec = Codec(KEY, version=(3, 0))
    info_3 = ConnectionInfo(server.address, KEY, protocol_version=(3, 0))
    with Client(info_3, codec=codec) as c, \
            pytest.raises(VersionMismatch, match="major versions must match") as info:
        c.connect(timeout_s=5)
    assert "2.1" in str(info.value) and "3.0" in str(info.value)


def test_connection_file_of_another_major_is_refused_before_sending() -> None:
    old = ConnectionInfo("tcp://127.0.0.1:9", KEY, protocol_version=(1, 0))
    with Client(old) as c, pytest.raises(VersionMismatch, match=r"speaks protocol 1\.0") as info:
        c.connect(timeout_s=5)
    assert "update the add-on or the sidecar" in str(info.value)
    assert c.stats["sent"] == 0


def test_server_with_other_major_version_is_refused() -> None:
    srv = ThreadedServer(KEY, codec=Codec(KEY, version=(3, 1)))
    try:
        with Client(endpoint=srv.address, key=KEY) as c, pytest.raises(VersionMismatch):
            c.connect(timeout_s=5)
        with Client(endpoint=srv.address, key=KEY) as c:  # the non-blocking path says so too
            c.send(Handshake(client_version=PROTOCOL_VERSION))
            with pytest.raises(VersionMismatch, match=r"protocol 3\.1"):
                poll_until(c, 1)
    finally:
        srv.close()


def test_wrong_key_looks_like_silence(server: ThreadedServer) -> None:
    with Client(endpoint=server.address, key=b"w" * 32) as c, pytest.raises(RequestTimeout):
        c.connect(timeout_s=0.3)
    assert server.endpoint.stats["dropped"] >= 1


def test_error_replies_raise_remote_error(server: ThreadedServer, client: Client) -> None:
    server.handlers[SessionOpen] = lambda srv, inc: __import__("protocol").ErrorReply(
        code="not_found", message=f"no session {inc.message.session_id!r}")
    with pytest.raises(RemoteError, match="no session 'nope'") as info:
        client.request(SessionOpen(session_id="nope"))
    assert info.value.code == "not_found"


def test_send_and_poll_never_block(server: ThreadedServer, client: Client) -> None:
    server.handlers[SessionOpen] = lambda srv, inc: (time.sleep(0.3), Ok(detail="late"))[1]
    msg_id = client.send(SessionOpen(session_id="s"))
    start = time.monotonic()
    assert client.poll() == []  # the server is still busy: nothing yet, and no waiting
    assert time.monotonic() - start < 0.05
    replies = poll_until(client, 1)
    assert [e.header.parent_id for e in replies] == [msg_id]
    assert replies[0].message == Ok(detail="late")


# --------------------------------------------------------------------------- events


def progress(step: int) -> JobProgress:
    return JobProgress(job_id="job-1", step=step, total=10)


def steps(envelopes: list) -> list[int]:
    return [e.message.step for e in envelopes if isinstance(e.message, JobProgress)]


def test_events_arrive_in_order_with_sequence_numbers(server: ThreadedServer,
                                                      client: Client) -> None:
    for step in range(1, 4):
        server.publish("s1", progress(step))
    got = poll_until(client, 3)
    assert steps(got) == [1, 2, 3]
    assert [e.header.seq for e in got] == [1, 2, 3]
    assert client.last_seq("s1") == 3


def test_gap_triggers_resync_and_events_are_delivered_in_order(
    server: ThreadedServer, client: Client
) -> None:
    server.publish("s1", progress(1))
    assert steps(poll_until(client, 1)) == [1]
    server.publish("s1", progress(2), deliver=False)  # lost on the way
    server.publish("s1", progress(3), deliver=False)
    server.publish("s1", progress(4))
    got = poll_until(client, 4)  # 2, 3 (re-sent), 4 (held until the gap closed), replayed
    assert steps(got) == [2, 3, 4]
    replayed = [e.message for e in got if isinstance(e.message, EventsReplayed)]
    assert replayed and replayed[0].complete and replayed[0].replayed == 3
    assert client.stats["gaps"] == 1 and client.last_seq("s1") == 4


def test_reconnect_resyncs_missed_events(server: ThreadedServer, client: Client) -> None:
    server.publish("s1", progress(1))
    assert steps(poll_until(client, 1)) == [1]
    client.close()
    server.publish("s1", progress(2), deliver=False)  # pushed while the client was away
    server.publish("s1", progress(3), deliver=False)
    client.reconnect(timeout_s=5)
    got = poll_until(client, 3)
    assert steps(got) == [2, 3]
    assert client.last_seq("s1") == 3


def test_resync_past_the_ring_gives_a_snapshot(server: ThreadedServer,
                                               client: Client) -> None:
    server.publish("s1", progress(1))
    assert steps(poll_until(client, 1)) == [1]
    for step in range(2, 8):  # the test ring keeps 4 events: 2 and 3 are forgotten
        server.publish("s1", progress(step), deliver=False)
    server.publish("s1", progress(8))
    got = poll_until(client, 2)
    replayed = [e.message for e in got if isinstance(e.message, EventsReplayed)]
    assert replayed and not replayed[0].complete and replayed[0].last_seq == 8
    assert steps(got) == [8]  # delivered after the snapshot; nothing older invented
    assert client.last_seq("s1") == 8


def test_duplicate_events_are_dropped(server: ThreadedServer, client: Client) -> None:
    server.publish("s1", progress(1))
    assert steps(poll_until(client, 1)) == [1]
    with server._lock:
        server.endpoint.push_event(server.peers, progress(1), session="s1", seq=1)
    assert poll_until(client, 1, timeout_s=0.3) == []
    assert client.stats["duplicate_events"] == 1


# --------------------------------------------------------------------------- files, endpoints


def test_connection_file_is_private_and_round_trips(tmp_path: Path) -> None:
    info = ConnectionInfo(endpoint="tcp://127.0.0.1:5555", key=KEY, pid=os.getpid())
    path = write_connection_file(tmp_path / "sidecar.json", info)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_connection_file(path) == info
    assert [p.name for p in tmp_path.iterdir()] == ["sidecar.json"]  # no temp file left


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_connection_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_connection_file(tmp_path / "c.json", ConnectionInfo("tcp://127.0.0.1:1", KEY))
    path.chmod(mode)
    with pytest.raises(ConnectionFileError, match="chmod 600"):
        load_connection_file(path)


def test_malformed_or_missing_connection_file(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFileError, match="does not exist"):
        load_connection_file(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"endpoint": "tcp://127.0.0.1:1", "key": "zz"}')
    bad.chmod(0o600)
    with pytest.raises(ConnectionFileError, match="malformed"):
        load_connection_file(bad)


def test_client_from_connection_file(server: ThreadedServer, tmp_path: Path) -> None:
    path = write_connection_file(tmp_path / "c.json", ConnectionInfo(server.address, KEY))
    with Client(path) as c:
        assert c.connect(timeout_s=5).server_id == "srv-1"


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [("tcp://127.0.0.1:5555", True), ("tcp://127.8.9.1:1", True), ("tcp://[::1]:5", True),
     ("tcp://localhost:5", True), ("ipc:///tmp/x", True), ("inproc://x", True),
     ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False), ("tcp://192.168.1.2:1", False),
     ("tcp://eth0:5555", False), ("tcp://[::]:5", False), ("tcp://example.org:5", False)],
)
def test_is_loopback(endpoint: str, local: bool) -> None:
    assert is_loopback(endpoint) is local


def test_remote_bind_without_curve_is_refused() -> None:
    with pytest.raises(InsecureBindError, match="CURVE"):
        ServerEndpoint("tcp://0.0.0.0:0", KEY)


@pytest.mark.skipif(not curve_available(), reason="libzmq without CURVE")
def test_curve_encrypted_handshake() -> None:
    public, secret = curve_keypair()
    srv = ThreadedServer(KEY, curve_secret_key=secret)
    try:
        with Client(endpoint=srv.address, key=KEY, curve_server_public_key=public) as c:
            reply = c.connect(timeout_s=5)
            assert reply.server_id == "srv-1"
            # CURVE's per-message MAC covers every byte: no digests either way.
            assert reply.buffer_integrity == "transport" and not c.codec.buffer_digests
            image = np.zeros((64, 64, 4), np.uint8)
            assert c.request(JobPreview(job_id="j", image=image)).detail == "job.preview"
        wrong_public, _ = curve_keypair()
        with Client(endpoint=srv.address, key=KEY, curve_server_public_key=wrong_public) as c, \
                pytest.raises(RequestTimeout):
            c.connect(timeout_s=0.3)
        with Client(endpoint=srv.address, key=KEY) as c, pytest.raises(RequestTimeout):
            c.connect(timeout_s=0.3)  # plaintext client cannot talk to a CURVE server
    finally:
        srv.close()


def test_dropped_messages_are_logged_as_counts_by_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import zmq

    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Client(endpoint=f"tcp://127.0.0.1:{port}", key=KEY) as c:
            c.send(Handshake(client_version=PROTOCOL_VERSION))
            identity = router.recv_multipart()[0]
            for i in range(50):  # garbage a hostile or broken peer could send
                router.send_multipart([identity, b"E3D" + bytes([i]), b"junk"])
            with caplog.at_level("WARNING", logger="protocol.client"):
                deadline = time.monotonic() + 5
                while c.stats["dropped"] < 50 and time.monotonic() < deadline:
                    c.poll(50)
            assert c.stats["dropped"] == 50
            warnings = [r for r in caplog.records if r.name == "protocol.client"]
            assert len(warnings) == 1  # the first drop at once, the rest summed later
    finally:
        router.close()
