"""Hostile input through a real ROUTER/DEALER pair: every bad message gets an error reply or
a logged drop, and the next valid request is still served."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import msgpack
import numpy as np
import pytest
import zmq
from protocol_testserver import ThreadedServer
from wire_frames import header as _header
from wire_frames import signed as _signed

from protocol import Codec, ErrorCode, ErrorReply, Heartbeat, HeartbeatReply, Limits, Ok
from protocol.codec import AUTH_MAGIC
from protocol.examples import example_camera

KEY = b"s" * 32
# MAXMSGSIZE 1 MiB keeps the oversize case cheap; bodies above 64 KiB are refused by the codec.
LIMITS = Limits(max_buffer_bytes=1 << 20, max_body_bytes=64 << 10)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    srv = ThreadedServer(KEY, limits=LIMITS)
    yield srv
    srv.close()


@pytest.fixture
def raw(server: ThreadedServer) -> Iterator[zmq.Socket]:
    sock = dealer(SENDER)
    sock.connect(server.address)
    yield sock
    sock.close(linger=0)


SENDER = "raw-peer"


def dealer(routing_id: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, routing_id.encode("ascii"))
    return sock


def header(type_name: str = "heartbeat", **overrides: object) -> dict[str, object]:
    return _header(type_name, **{"sender": SENDER, **overrides})


def signed(head: dict[str, object] | bytes, body: dict[str, object] | bytes,
           *buffers: bytes, key: bytes = KEY, digests: bool = True) -> list[bytes]:
    return _signed(head, body, *buffers, key=key, digests=digests)


def tampered_buffer() -> list[bytes]:
    frames = signed(header("job.render"), camera_body(), EYE)
    return [*frames[:3], b"\x01" + frames[3][1:]]


def tampered_header() -> list[bytes]:
    frames = signed(header(), {})
    head = msgpack.unpackb(frames[1])
    head["type"] = "session.delete"
    return [frames[0], msgpack.packb(head), *frames[2:]]


def receive(sock: zmq.Socket, timeout_ms: int = 300) -> ErrorReply | object | None:
    if not sock.poll(timeout_ms):
        return None
    return Codec(KEY).unpack(sock.recv_multipart()).message


def still_serves(sock: zmq.Socket, attempts: int = 1) -> bool:
    sender = sock.getsockopt(zmq.ROUTING_ID).decode("ascii")
    for _ in range(attempts):
        sock.send_multipart(Codec(KEY).pack(Heartbeat(), sender=sender))
        if isinstance(receive(sock, 1000), HeartbeatReply):
            return True
    return False


def camera_body(**overrides: object) -> dict[str, object]:
    cam = {"c2w": {"__array__": 0, "dtype": "<f8", "shape": [4, 4]}, "fx": 50.0, "fy": 50.0,
           "cx": 4.0, "cy": 3.0, "width": 8, "height": 6}
    cam.update(overrides)
    return {"session_id": "s1", "camera": cam}


EYE = np.eye(4).tobytes()


def nested_arrays(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


# (id, frames builder, expected): expected is "drop" or the error code of the reply.
CASES: list[tuple[str, Callable[[], list[bytes]], str]] = [
    ("zero-frames(one-empty)", lambda: [b""], "drop"),
    ("one-frame", lambda: [b"x" * 32], "drop"),
    ("two-frames", lambda: signed(header(), {})[:2], "drop"),
    ("many-frames", lambda: signed(header(), {}, *[b"x"] * 40), "drop"),
    ("missing-signature", lambda: signed(header(), {})[1:], "drop"),
    ("garbled-signature", lambda: [AUTH_MAGIC + b"\x00" * 32, *signed(header(), {})[1:]],
     "drop"),
    ("protocol-1-signature", lambda: [b"\x00" * 32, *signed(header(), {})[1:]], "drop"),
    ("short-signature", lambda: [b"\x00" * 8, *signed(header(), {})[1:]], "drop"),
    ("old-key", lambda: signed(header(), {}, key=b"o" * 32), "drop"),
    ("stale", lambda: signed(header(ts=time.time() - 3600), {}), "stale"),
    ("future", lambda: signed(header(ts=time.time() + 3600), {}), "stale"),
    ("header-tampered", tampered_header, "drop"),
    ("buffer-tampered", tampered_buffer, "drop"),
    ("sizes-mismatch", lambda: signed(header("job.render", sizes=[10, 128]), camera_body(), EYE),
     "drop"),
    ("oversize-declared", lambda: signed(header("job.render", sizes=[10, 2**40]),
                                         camera_body(), EYE), "drop"),
    ("digest-mismatch", lambda: signed(header("job.render", digests=["0" * 64] * 2),
                                       camera_body(), EYE), "drop"),
    ("digest-count", lambda: signed(header("job.render", digests=["0" * 64]),
                                    camera_body(), EYE), "drop"),
    ("digests-missing-on-tcp", lambda: signed(header(), {}, digests=False), "drop"),
    ("wrong-sender", lambda: signed(header(sender="someone-else"), {}), "drop"),
    ("no-sender", lambda: signed(header(sender=None), {}), "drop"),
    ("oversize-header", lambda: signed(header(pad="x" * 70_000), {}), "drop"),
    ("oversize-body", lambda: signed(header(), {"pad": "x" * 70_000}), "drop"),
    ("truncated-body", lambda: signed(header(), msgpack.packb({"a": "bcdef"})[:-2]),
     "bad_msgpack"),
    ("trailing-bytes", lambda: signed(header(), msgpack.packb({}) + b"\x00"), "bad_msgpack"),
    ("bad-utf8", lambda: signed(header(), b"\x81\xa1a\xa2\xff\xfe"), "bad_msgpack"),
    ("int-key", lambda: signed(header(), b"\x81\x01\xc0"), "bad_msgpack"),
    ("bytes-key", lambda: signed(header(), b"\x81\xc4\x01a\xc0"), "bad_msgpack"),
    ("ext-type", lambda: signed(header(), b"\x81\xa1a\xd4\x01\x00"), "bad_msgpack"),
    ("body-not-a-map", lambda: signed(header(), msgpack.packb([1, 2])), "bad_msgpack"),
    ("nesting-bomb", lambda: signed(header(), b"\x81\xa1a" + nested_arrays(10_000)),
     "bad_msgpack"),
    ("huge-declared-array", lambda: signed(header(), b"\x81\xa1a\xdd\xff\xff\xff\xff"),
     "bad_msgpack"),
    ("huge-declared-map", lambda: signed(header(), b"\xdf\xff\xff\xff\xff"), "bad_msgpack"),
    ("huge-declared-str", lambda: signed(header(), b"\x81\xa1a\xdb\xff\xff\xff\xff"),
     "bad_msgpack"),
    ("header-garbage", lambda: signed(b"\xc1", {}), "bad_msgpack"),
    ("header-missing-msg_id", lambda: signed({k: v for k, v in header().items()
                                              if k != "msg_id"}, {}), "bad_header"),
    ("header-mistyped-ts", lambda: signed(header(ts="now"), {}), "bad_header"),
    ("header-nan-ts", lambda: signed(header(ts=float("nan")), {}), "bad_header"),
    ("version-3", lambda: signed(header(v=[3, 0]), {}), "unsupported_version"),
    ("unknown-type", lambda: signed(header("job.levitate"), {}), "unknown_type"),
    ("missing-field", lambda: signed(header("session.open"), {}), "missing_field"),
    ("mistyped-field", lambda: signed(header("session.open"), {"session_id": 5}),
     "invalid_field"),
    ("bool-as-int", lambda: signed(header("events.since"),
                                   {"session_id": "s", "after_seq": True}), "invalid_field"),
    ("out-of-range", lambda: signed(header("events.since"),
                                    {"session_id": "s", "after_seq": -1}), "invalid_field"),
    ("nan-float", lambda: signed(header("job.render"), camera_body(fx=float("nan")), EYE),
     "invalid_field"),
    ("inf-float", lambda: signed(header("job.render"), camera_body(cx=float("inf")), EYE),
     "invalid_field"),
    ("nan-in-array", lambda: signed(header("job.render"), camera_body(),
                                    np.full((4, 4), np.nan).tobytes()), "invalid_field"),
    ("overlong-string", lambda: signed(header("job.run_turn"),
                                       {"session_id": "s", "instruction": "x" * 3000}),
     "invalid_field"),
    ("path-traversal", lambda: signed(header("upload.begin"), {
        "session_id": "s", "path": "../../etc/passwd", "size": 1, "sha256": "0" * 64}),
     "invalid_field"),
    ("absolute-path", lambda: signed(header("upload.begin"), {
        "session_id": "s", "path": "/etc/passwd", "size": 1, "sha256": "0" * 64}),
     "invalid_field"),
    ("inner-dotdot", lambda: signed(header("upload.begin"), {
        "session_id": "s", "path": "a/../../b", "size": 1, "sha256": "0" * 64}),
     "invalid_field"),
    ("id-traversal", lambda: signed(header("session.open"), {"session_id": ".."}),
     "invalid_field"),
    ("shape-mismatch", lambda: signed(header("job.render"), camera_body(), EYE[:-8]),
     "bad_array"),
    ("huge-shape", lambda: signed(header("job.render"), camera_body(
        c2w={"__array__": 0, "dtype": "<f8", "shape": [2**40, 2**40]}), EYE), "bad_array"),
    ("negative-shape", lambda: signed(header("job.render"), camera_body(
        c2w={"__array__": 0, "dtype": "<f8", "shape": [-4, -4]}), EYE), "bad_array"),
    ("bad-dtype", lambda: signed(header("job.render"), camera_body(
        c2w={"__array__": 0, "dtype": "O", "shape": [4, 4]}), EYE), "bad_array"),
    ("wrong-dtype-for-field", lambda: signed(header("job.render"), camera_body(
        c2w={"__array__": 0, "dtype": "<f4", "shape": [4, 8]}), EYE), "bad_array"),
    ("buffer-index-out-of-range", lambda: signed(header("job.render"), camera_body(
        c2w={"__array__": 3, "dtype": "<f8", "shape": [4, 4]}), EYE), "bad_array"),
    ("unreferenced-buffer", lambda: signed(header("session.open"), {"session_id": "s"},
                                           b"stray"), "bad_frames"),
    ("bad-combination", lambda: signed(header("job.export"), {
        "session_id": "s", "crop_min": [1.0, 1.0, 1.0], "crop_max": [0.0, 0.0, 0.0]}),
     "invalid_field"),
    ("cropped-nerfstudio-run", lambda: signed(header("job.export"), {
        "session_id": "s", "kind": "nerfstudio_run", "crop_min": [0.0, 0.0, 0.0],
        "crop_max": [1.0, 1.0, 1.0]}), "invalid_field"),
]


@pytest.mark.parametrize(("frames", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_input_is_answered_or_dropped(
    server: ThreadedServer, raw: zmq.Socket, frames: Callable[[], list[bytes]], expected: str
) -> None:
    before = dict(server.endpoint.stats)
    sent = frames()
    raw.send_multipart(sent)
    reply = receive(raw, 300 if expected == "drop" else 3000)
    if expected == "drop":
        assert reply is None
        assert server.endpoint.stats["dropped"] == before.get("dropped", 0) + 1
    else:
        assert isinstance(reply, ErrorReply), reply
        assert reply.code == expected, reply.message
        assert server.endpoint.stats["rejected"] == before.get("rejected", 0) + 1
    assert still_serves(raw)


def test_error_reply_names_the_offending_message(raw: zmq.Socket) -> None:
    head = header("session.open")
    raw.send_multipart(signed(head, {}))
    frames = raw.recv_multipart() if raw.poll(3000) else pytest.fail("no reply")
    envelope = Codec(KEY).unpack(frames)
    assert envelope.header.parent_id == head["msg_id"]
    assert envelope.message.code == ErrorCode.MISSING_FIELD
    assert "session_id" in envelope.message.message


def test_extra_fields_are_ignored(raw: zmq.Socket) -> None:
    raw.send_multipart(signed(header("session.open"),
                              {"session_id": "s1", "from_the_future": [1, {"x": 2}]}))
    reply = receive(raw, 3000)
    assert isinstance(reply, Ok) and reply.detail == "session.open"


def test_replayed_message_is_dropped(server: ThreadedServer, raw: zmq.Socket) -> None:
    frames = signed(header(), {})
    raw.send_multipart(frames)
    assert isinstance(receive(raw, 3000), HeartbeatReply)
    dropped = server.endpoint.stats["dropped"]
    raw.send_multipart(frames)
    assert receive(raw, 300) is None
    assert server.endpoint.stats["dropped"] == dropped + 1
    assert still_serves(raw)


def test_frame_above_maxmsgsize_drops_only_that_connection(
    server: ThreadedServer, raw: zmq.Socket
) -> None:
    other = dealer("other-peer")
    other.connect(server.address)
    try:
        assert still_serves(other)
        raw.send_multipart(signed(header(), {}, b"x" * (2 << 20)))
        assert receive(raw, 300) is None
        assert still_serves(other)  # other peers are unaffected
        assert still_serves(raw, attempts=5)  # the dropped peer reconnects by itself
    finally:
        other.close(linger=0)


def test_valid_render_request_with_array_is_accepted(raw: zmq.Socket) -> None:
    from protocol import JobRender

    raw.send_multipart(Codec(KEY).pack(JobRender(session_id="s1", camera=example_camera()),
                                       sender=SENDER))
    reply = receive(raw, 3000)
    assert isinstance(reply, Ok) and reply.detail == "job.render"


def test_valid_request_behind_a_flood_of_bad_ones_is_served(
    server: ThreadedServer, raw: zmq.Socket
) -> None:
    dropped = server.endpoint.stats["dropped"]
    for _ in range(50):
        raw.send_multipart([b"\x00" * 32, b"junk", b"junk"])
    assert still_serves(raw)
    deadline = time.monotonic() + 5
    while server.endpoint.stats["dropped"] < dropped + 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.endpoint.stats["dropped"] == dropped + 50
