"""Which bytes are authenticated how: digests on tcp, none where the transport vouches
(private ipc://, CURVE); version and clock errors that say what to fix; per-client replay
guards; dropped-message logs as counts."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from protocol_testserver import ThreadedServer
from wire_frames import header

from protocol import (
    REQUEST_LIMITS,
    Client,
    Codec,
    ErrorCode,
    Heartbeat,
    InsecureBindError,
    JobPreview,
    ProtocolError,
    RemoteError,
)
from protocol.connection import (
    InsecureTransportError,
    check_private_ipc,
    private_ipc_endpoint,
    transport_authenticates,
)

KEY = b"t" * 32
posix_only = pytest.mark.skipif(os.name != "posix" or not zmq.has("ipc"),
                                reason="private ipc:// sockets need POSIX permissions")


@pytest.fixture
def tcp_server() -> Iterator[ThreadedServer]:
    srv = ThreadedServer(KEY)
    yield srv
    srv.close()


def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (256, 256, 4), dtype=np.uint8)


def test_tcp_loopback_signs_buffers_with_digests(tcp_server: ThreadedServer) -> None:
    assert not transport_authenticates(tcp_server.address, curve=False)
    with Client(endpoint=tcp_server.address, key=KEY) as client:
        assert client.connect(timeout_s=5).buffer_integrity == "digest"
        assert client.request(JobPreview(job_id="j", image=image())).detail == "job.preview"
    received = tcp_server.seen[-1].envelope
    assert received.header.digests is not None and len(received.header.digests) == 2
    assert np.array_equal(received.message.image, image())


@posix_only
def test_private_ipc_socket_needs_no_digests(tmp_path: Path) -> None:
    endpoint = private_ipc_endpoint(tmp_path / "run")
    assert transport_authenticates(endpoint, curve=False)
    srv = ThreadedServer(KEY, bind=endpoint)
    try:
        socket_file = Path(endpoint.removeprefix("ipc://"))
        assert stat.S_IMODE(socket_file.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(socket_file.stat().st_mode) == 0o600
        with Client(endpoint=endpoint, key=KEY) as client:
            assert client.connect(timeout_s=5).buffer_integrity == "transport"
            assert client.request(JobPreview(job_id="j", image=image())).detail == "job.preview"
        received = srv.seen[-1].envelope
        assert len(received.header.digests) == 1  # the body's; the image is not hashed
        assert np.array_equal(received.message.image, image())
    finally:
        srv.close()


@posix_only
def test_ipc_socket_in_a_shared_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    endpoint = f"ipc://{shared}/sidecar.sock"
    with pytest.raises(InsecureBindError, match="mode 0700"):
        ThreadedServer(KEY, bind=endpoint)
    with pytest.raises(InsecureTransportError, match="other users could connect"):
        check_private_ipc(endpoint)
    with Client(endpoint=endpoint, key=KEY) as client, pytest.raises(InsecureTransportError):
        client.connect(timeout_s=1)


def test_integrity_mismatch_is_named_at_the_handshake() -> None:
    # A server that skips digests on plain tcp (misconfigured): the client says so at once.
    srv = ThreadedServer(KEY, codec=Codec(KEY, limits=REQUEST_LIMITS, buffer_digests=False))
    try:
        with Client(endpoint=srv.address, key=KEY) as client, \
                pytest.raises(ProtocolError, match="'transport', this client by 'digest'"):
            client.connect(timeout_s=5)
    finally:
        srv.close()


@pytest.mark.parametrize(("msg_id", "parent"), [("a" * 32, "a" * 32), ("not-an-id", None)])
def test_protocol_1_client_is_told_in_its_own_framing(tcp_server: ThreadedServer, msg_id: str,
                                                       parent: str | None) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(tcp_server.address)
    try:
        old_header = msgpack.packb({"v": [1, 0], "type": "handshake", "msg_id": msg_id,
                                    "parent_id": None, "ts": time.time(), "session": None,
                                    "seq": None})
        body = msgpack.packb({"client_version": [1, 0], "client_name": "old add-on"})
        codec = Codec(KEY)
        sock.send_multipart([codec.legacy_signature([old_header, body]), old_header, body])
        assert sock.poll(3000), "no answer to a protocol-1 handshake"
        frames = sock.recv_multipart()
        # What a protocol-1 client checks: its signature over every frame, then the header.
        assert frames[0] == codec.legacy_signature(frames[1:])
        reply_header = msgpack.unpackb(frames[1])
        assert reply_header["v"][0] == 2 and reply_header["parent_id"] == parent
        reply = msgpack.unpackb(frames[2])
        assert reply["code"] == "unsupported_version" and "protocol 1" in reply["message"]
        assert "update the add-on" in reply["message"]
    finally:
        sock.close(linger=0)


def test_a_client_with_a_wrong_clock_is_told_the_allowed_skew(
    tcp_server: ThreadedServer,
) -> None:
    skewed = Codec(KEY, send_limits=REQUEST_LIMITS, clock=lambda: time.time() + 400)
    with Client(endpoint=tcp_server.address, key=KEY, codec=skewed) as client, \
            pytest.raises(RemoteError, match=r"allowed skew is ±300 s") as info:
        client.connect(timeout_s=5)
    assert info.value.code == ErrorCode.STALE
    assert "clock is +400" in info.value.message  # the sender learns which way it is off


def test_a_fast_clock_cannot_lock_out_other_clients() -> None:
    srv = ThreadedServer(KEY, codec=Codec(KEY, limits=REQUEST_LIMITS, max_seen_ids=8))
    try:
        ahead = Codec(KEY, send_limits=REQUEST_LIMITS, clock=lambda: time.time() + 250)
        with Client(endpoint=srv.address, key=KEY, codec=ahead) as fast:
            fast.connect(timeout_s=5)
            for _ in range(30):  # more than the guard remembers: its floor moves ahead
                fast.request(Heartbeat(), timeout_s=5)
        for _ in range(3):  # every correctly-clocked client still gets in
            with Client(endpoint=srv.address, key=KEY) as on_time:
                on_time.connect(timeout_s=5)
                on_time.request(Heartbeat(), timeout_s=5)
    finally:
        srv.close()


def test_dropped_messages_are_logged_as_counts(tcp_server: ThreadedServer,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="protocol.server")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(tcp_server.address)
    try:
        before = tcp_server.endpoint.drops.total
        forged = [Codec(b"x" * 32).auth_tag(msgpack.packb(header())), msgpack.packb(header()),
                  b"\x80"]
        for _ in range(200):
            sock.send_multipart(forged)
        deadline = time.monotonic() + 10
        while tcp_server.endpoint.drops.total < before + 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tcp_server.endpoint.drops.total == before + 200
    finally:
        sock.close(linger=0)
    lines = [r for r in caplog.records if r.name == "protocol.server"]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]  # not one line per drop
    assert all(r.levelno == logging.WARNING for r in lines)
    assert "bad_signature" in lines[0].getMessage()
    tcp_server.endpoint.drops._next_at = 0.0  # the next summary is due: it holds the rest
    tcp_server.endpoint.drops.flush_due()
    counted = sum(int(r.getMessage().split()[1]) for r in caplog.records
                  if r.name == "protocol.server")
    assert counted == 200


@posix_only
def test_a_too_long_socket_path_falls_back_to_a_private_temporary_directory(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    endpoint = private_ipc_endpoint(deep)
    folder = Path(endpoint.removeprefix("ipc://")).parent
    assert len(endpoint) - len("ipc://") <= 100 and not str(folder).startswith(str(tmp_path))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    check_private_ipc(endpoint)
    folder.rmdir()
