"""Codec: round trips of every message type, arrays of every dtype, signing and replay."""

from __future__ import annotations

import hashlib
import hmac

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import protocol.codec as codec_module
from protocol import (
    DTYPES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Codec,
    ErrorCode,
    Heartbeat,
    JobPreview,
    JobProgress,
    JobRunTurn,
    MasksResult,
    Ok,
    ProtocolError,
    RenderResult,
    ReplayGuard,
    UploadChunk,
)
from protocol.examples import example_camera, example_messages
from protocol.messages import Message, SessionCreate, SessionList, message
from protocol.schema import Record, Rule, Scalars, param, record

KEY = b"k" * 32

PROTOCOL_TYPES = sorted(n for n, c in MESSAGE_TYPES.items() if c.__module__ == "protocol.messages")
"""The protocol's own types (tests of other packages register theirs in the same table)."""


def roundtrip(msg: Message, **kwargs: object) -> Message:
    frames = Codec(KEY).pack(msg, **kwargs)
    # bytes() copies each frame, as a socket would: nothing may alias the sender's arrays.
    return Codec(KEY).unpack([bytes(memoryview(f)) for f in frames]).message


@pytest.mark.parametrize("type_name", PROTOCOL_TYPES)
def test_every_message_type_round_trips(type_name: str) -> None:
    original = example_messages()[type_name]
    decoded = roundtrip(original)
    assert type(decoded) is type(original)
    assert decoded == original
    for name, value in vars(original).items():
        if isinstance(value, np.ndarray):
            got = getattr(decoded, name)
            assert got.dtype == value.dtype and got.shape == value.shape
            assert got.tobytes() == value.tobytes()


def test_header_carries_routing_fields() -> None:
    codec = Codec(KEY)
    frames = codec.pack(JobProgress(job_id="j", step=1), parent_id="a" * 32, session="s-1",
                        seq=7)
    header = Codec(KEY).unpack(frames).header
    assert (header.type, header.parent_id, header.session, header.seq) == (
        "job.progress", "a" * 32, "s-1", 7)
    assert header.v == PROTOCOL_VERSION and len(header.msg_id) == 32


@record
class _CreateAsIn21(Record):
    """`session.create` as a 2.1 sidecar declared it: `preset` a string defaulting to a name."""

    name: str = param(max_len=200)
    preset: str = param("small", pattern=r"[a-z]+")
    backend: str | None = param(None, pattern=r"[a-z]+")


def test_fields_left_unset_are_left_out_and_read_as_the_receivers_default() -> None:
    frames = Codec(KEY).pack(SessionCreate(name="garden"))
    body = msgpack.unpackb(frames[2])
    assert body == {"name": "garden"}  # every None-default field unset: none sent
    assert roundtrip(SessionCreate(name="garden")) == SessionCreate(name="garden")
    # a 2.1 sidecar reads the absent preset as its own default instead of refusing nil
    older = codec_module.decode_record(_CreateAsIn21, body, (), "session.create", set())
    assert (older.preset, older.backend) == ("small", None)
    chosen = msgpack.unpackb(Codec(KEY).pack(SessionCreate(name="g", preset="tiny"))[2])
    assert chosen == {"name": "g", "preset": "tiny"}
    # value defaults always travel, and an older sender's explicit nil still reads as unset
    assert msgpack.unpackb(Codec(KEY).pack(SessionList())[2]) == {"limit": 1000}
    explicit = {"name": "garden", "preset": None, "backend": None, "dataset_path": None}
    decoded = codec_module.decode_record(SessionCreate, explicit, (), "session.create", set())
    assert decoded == SessionCreate(name="garden")
    # the header keeps every key (its layout is documented key by key)
    assert {"parent_id", "session", "seq", "sender"} <= set(msgpack.unpackb(frames[1]))


def test_arrays_travel_as_separate_frames_without_copy() -> None:
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    frames = Codec(KEY).pack(JobPreview(job_id="j", image=image))
    assert len(frames) == 4
    buffer = frames[3]
    assert isinstance(buffer, memoryview)
    assert np.shares_memory(np.frombuffer(buffer, np.uint8), image)  # zero-copy send
    body = msgpack.unpackb(frames[2])
    assert body["image"] == {"__array__": 0, "dtype": "|u1", "shape": [4, 5, 3]}


def test_decoded_arrays_view_the_received_frame() -> None:
    frames = [bytearray(memoryview(f)) for f in Codec(KEY).pack(
        UploadChunk(upload_id="u", offset=0, data=np.zeros(16, np.uint8)))]
    decoded = Codec(KEY).unpack(frames).message
    frames[3][0] = 9  # the decoded array is a view of this frame, not a copy
    assert decoded.data[0] == 9


def test_big_endian_and_strided_arrays_are_normalised() -> None:
    big = np.arange(12, dtype=">f4").reshape(3, 4)
    result = RenderResult(job_id="j", camera=example_camera(4, 3), depth=big)
    assert result.depth.dtype.str == "<f4"
    assert np.array_equal(roundtrip(result).depth, big)
    strided = np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2]
    masks = MasksResult(job_id="j", caption="c", queries=("q",), roles=("edit",),
                        heatmaps=np.zeros((1, 4, 3), np.float32), masks=strided[None] > 5,
                        iou=np.zeros(1, np.float32), runner_up_iou=np.zeros(1, np.float32),
                        soft_mask=np.zeros((4, 3), np.float32))
    assert np.array_equal(roundtrip(masks).masks, strided[None] > 5)


# --------------------------------------------------------------------------- property tests


@message("test.arrays", "event")
class _ArrayCarrier(Message):
    """Any whitelisted array, plus scalars, for property tests."""

    array: np.ndarray = param(nonfinite=True)
    """Any allowed dtype and shape."""
    label: str = param("", max_len=64)
    """Free text."""
    values: Scalars = param(default_factory=dict)
    """Free scalars."""


_dtypes = st.sampled_from(sorted(DTYPES)).map(np.dtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(dtype=_dtypes, shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=5),
                  elements=None))
def test_any_allowed_array_round_trips_bit_exactly(array: np.ndarray) -> None:
    if array.dtype.kind == "b":
        array = (array.reshape(-1).view(np.uint8) & 1).view(np.bool_).reshape(array.shape)
    decoded = roundtrip(_ArrayCarrier(array=array))
    assert decoded.array.dtype == array.dtype
    assert decoded.array.shape == array.shape
    assert decoded.array.tobytes() == array.tobytes()


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_every_allowed_dtype_round_trips(dtype: str) -> None:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, 2 * 3 * 5 * np.dtype(dtype).itemsize, dtype=np.uint8)
    array = raw.view(dtype).reshape(2, 3, 5)
    if array.dtype.kind == "b":
        array = raw[: array.size].view(np.uint8).__and__(1).view(np.bool_).reshape(2, 3, 5)
    decoded = roundtrip(_ArrayCarrier(array=array))
    assert decoded.array.dtype.str == dtype
    assert decoded.array.tobytes() == array.tobytes()


def test_disallowed_dtypes_are_refused() -> None:
    for array in (np.zeros(2, ">i8").astype(object), np.zeros(2, np.complex64),
                  np.zeros(2, "U3"), np.zeros(2, "datetime64[s]")):
        with pytest.raises(ProtocolError, match="not allowed"):
            _ArrayCarrier(array=array)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=50),
)


@settings(max_examples=60, deadline=None)
@given(label=st.text(max_size=64),
       values=st.dictionaries(st.text(max_size=20), _scalars, max_size=8))
def test_any_text_and_scalars_round_trip(label: str, values: dict[str, object]) -> None:
    label = label.replace("\x00", "")
    values = {k.replace("\x00", ""): (v.replace("\x00", "") if isinstance(v, str) else v)
              for k, v in values.items()}
    msg = _ArrayCarrier(array=np.zeros(1, np.uint8), label=label, values=values)
    decoded = roundtrip(msg)
    assert decoded.label == label and decoded.values == values


@settings(max_examples=60, deadline=None)
@given(instruction=st.text(min_size=1, max_size=200).filter(lambda s: s.strip() != ""),
       seed=st.integers(0, 2**32 - 1), edit_rate=st.integers(1, 100_000),
       lr=st.floats(1e-9, 1.0), queries=st.lists(st.text(max_size=30), max_size=16))
def test_run_turn_bodies_round_trip(instruction: str, seed: int, edit_rate: int, lr: float,
                                    queries: list[str]) -> None:
    clean = [q.replace("\x00", "") for q in queries]
    msg = JobRunTurn(session_id="s", instruction=instruction.replace("\x00", "") or "x",
                     seed=seed, edit_rate=edit_rate, lr=lr, edit_queries=clean)
    assert roundtrip(msg) == msg


# --------------------------------------------------------------------------- validation on build


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"step": -1}, "below the minimum"),
        ({"step": True}, "expected an integer"),
        ({"step": 1.5}, "expected an integer"),
        ({"loss": float("nan"), "eta_s": float("inf")}, "not finite"),
        ({"eta_s": -1.0}, "below the minimum"),
        ({"message": "x" * 5000}, "exceeds 4096"),
        ({"job_id": "../etc"}, "does not match"),
        ({"message": "a\x00b"}, "NUL"),
    ],
)
def test_invalid_messages_cannot_be_built(kwargs: dict[str, object], fragment: str) -> None:
    fields = {"job_id": "j", "step": 0} | kwargs
    with pytest.raises(ProtocolError, match=fragment) as info:
        JobProgress(**fields)
    assert info.value.code == ErrorCode.INVALID_FIELD


def test_nan_loss_is_allowed_where_declared() -> None:
    assert np.isnan(roundtrip(JobProgress(job_id="j", step=0, loss=float("nan"))).loss)


def test_rule_dataclass_documents_its_fields() -> None:
    assert Rule().max_len == 4096


# --------------------------------------------------------------------------- signing, replay


def _resign(frames: list[bytes], key: bytes = KEY) -> list[bytes]:
    """The documented construction: magic, then HMAC-SHA256(key, magic || header)."""
    magic = b"E3D" + bytes([PROTOCOL_VERSION[0]])
    return [magic + hmac.new(key, magic + frames[1], hashlib.sha256).digest(), *frames[1:]]


def _frames(msg: Message | None = None) -> list[bytes]:
    msg = msg or UploadChunk(upload_id="u", offset=0, data=np.arange(8, dtype=np.uint8))
    return [bytes(memoryview(f)) for f in Codec(KEY).pack(msg)]


def test_signature_matches_the_documented_construction() -> None:
    frames = _frames()
    assert _resign(frames) == frames
    header = msgpack.unpackb(frames[1])
    assert header["sizes"] == [len(f) for f in frames[2:]]
    assert header["digests"] == [hashlib.sha256(f).hexdigest() for f in frames[2:]]


def test_transport_mode_digests_only_the_body_and_digest_mode_requires_all() -> None:
    by_transport = Codec(KEY, buffer_digests=False)
    chunk = UploadChunk(upload_id="u", offset=0, data=np.arange(8, dtype=np.uint8))
    frames = [bytes(memoryview(f)) for f in by_transport.pack(chunk)]
    assert msgpack.unpackb(frames[1])["digests"] == [hashlib.sha256(frames[2]).hexdigest()]
    assert len(by_transport.unpack(frames).header.digests) == 1  # the transport vouches
    with pytest.raises(ProtocolError, match="requires one per frame") as info:
        Codec(KEY).unpack(by_transport.pack(chunk))
    assert not info.value.answerable
    # Without buffers both modes send the same: a handshake always gets through.
    Codec(KEY).unpack(by_transport.pack(Heartbeat()))
    # Digests sent anyway are checked even where the transport would not need them.
    tampered = _frames()
    tampered[3] = b"\xff" + tampered[3][1:]
    with pytest.raises(ProtocolError, match="digest"):
        by_transport.unpack(tampered)


def test_unauthenticated_messages_are_refused_before_any_buffer_is_hashed(monkeypatch) -> None:
    hashed: list[int] = []
    real = codec_module.frame_digest
    monkeypatch.setattr(codec_module, "frame_digest", lambda f: hashed.append(1) or real(f))
    big = UploadChunk(upload_id="u", offset=0, data=np.zeros(8 << 20, np.uint8))
    frames = [bytes(memoryview(f)) for f in Codec(b"o" * 32).pack(big)]
    hashed.clear()
    with pytest.raises(ProtocolError, match="signature"):
        Codec(KEY).unpack(frames)
    assert hashed == []  # the 36-byte tag over the header decided
    good = [bytes(memoryview(f)) for f in Codec(KEY).pack(big)]
    hashed.clear()
    Codec(KEY).unpack(good)
    assert len(hashed) == 2  # accepted: body and buffer each hashed once


def test_protocol_1_frames_get_a_version_error_not_a_signature_error() -> None:
    frames = _frames()
    legacy = [Codec(KEY).legacy_signature(frames[1:]), *frames[1:]]
    with pytest.raises(ProtocolError) as info:
        Codec(KEY).unpack(legacy)
    assert info.value.code == ErrorCode.UNSUPPORTED_VERSION and "protocol 1" in info.value.message


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: [f[0][:-1] + bytes([f[0][-1] ^ 1]), *f[1:]],  # garbled signature
        lambda f: [b"", *f[1:]],  # empty signature
        lambda f: [f[0], f[1][:-1] + bytes([f[1][-1] ^ 1]), *f[2:]],  # header changed
        lambda f: [*f[:2], f[2] + b"\xc0", *f[3:]],  # body grown, signature kept
        lambda f: [*f[:3], f[3][:-1] + b"\xff"],  # buffer changed, signature kept
        lambda f: [f[0], f[1], f[2] + f[3][:0], f[3][:4], f[3][4:]],  # buffer re-split
        lambda f: [*f, b"extra"],  # frame appended
        lambda f: _resign(f, b"o" * 32),  # signed with another key
    ],
    ids=["garbled", "empty", "header-modified", "body-grown", "buffer-modified", "re-split",
         "appended", "old-key"],
)
def test_tampered_frames_fail_the_signature(tamper) -> None:
    with pytest.raises(ProtocolError) as info:
        Codec(KEY).unpack(tamper(_frames()))
    assert info.value.code in (ErrorCode.BAD_SIGNATURE, ErrorCode.BAD_FRAMES)
    assert not info.value.answerable


def test_replayed_and_stale_messages_are_rejected() -> None:
    now = [1000.0]
    receiver = Codec(KEY, clock=lambda: now[0], replay_window_s=300)
    sender = Codec(KEY, clock=lambda: now[0])
    frames = sender.pack(JobProgress(job_id="j", step=0))
    receiver.unpack(frames)
    with pytest.raises(ProtocolError) as info:
        receiver.unpack(frames)
    assert info.value.code == ErrorCode.REPLAYED and not info.value.answerable
    old = sender.pack(JobProgress(job_id="j", step=0))
    now[0] += 301
    with pytest.raises(ProtocolError) as info:
        receiver.unpack(old)
    assert info.value.code == ErrorCode.STALE and info.value.answerable
    assert "allowed skew is ±300 s" in info.value.message


def test_one_senders_clock_cannot_lock_out_another() -> None:
    now = [10_000.0]
    receiver = Codec(KEY, clock=lambda: now[0], max_seen_ids=5)
    ahead = Codec(KEY, clock=lambda: now[0] + 250)  # inside the ±300 s window
    sent = []
    for _ in range(20):  # overflows its own id memory: its floor moves 250 s ahead
        now[0] += 0.01
        sent.append(ahead.pack(Heartbeat(), sender="fast-clock"))
        receiver.unpack(sent[-1], sender=b"fast-clock")
    on_time = Codec(KEY, clock=lambda: now[0])
    for _ in range(3):
        receiver.unpack(on_time.pack(Heartbeat(), sender="on-time"), sender=b"on-time")
    with pytest.raises(ProtocolError, match="replayed"):  # the floor still guards its owner
        receiver.unpack(sent[0], sender=b"fast-clock")


def test_a_header_names_its_sender_and_cannot_be_reused_by_another() -> None:
    frames = Codec(KEY).pack(Heartbeat(), sender="client-a")
    with pytest.raises(ProtocolError, match="came from") as info:
        Codec(KEY).unpack(frames, sender=b"client-b")
    assert not info.value.answerable
    Codec(KEY).unpack(frames, sender=b"client-a")


def test_senders_are_forgotten_only_when_idle() -> None:
    now = [1000.0]
    receiver = Codec(KEY, clock=lambda: now[0], max_senders=2)
    sender = Codec(KEY, clock=lambda: now[0])
    for name in ("a", "b"):
        receiver.unpack(sender.pack(Heartbeat(), sender=name), sender=name.encode())
    with pytest.raises(ProtocolError) as info:
        receiver.unpack(sender.pack(Heartbeat(), sender="c"), sender=b"c")
    assert info.value.code == ErrorCode.BUSY and info.value.answerable
    now[0] += 301  # a and b now hold only stale ids: their guards may go
    receiver.unpack(sender.pack(Heartbeat(), sender="c"), sender=b"c")


def test_a_reply_to_a_fresh_request_is_read_whatever_the_clock() -> None:
    """A client whose clock is off still reads the server's error that says so."""
    now = [1000.0]
    client = Codec(KEY, clock=lambda: now[0] + 400)
    server_reply = Codec(KEY, clock=lambda: now[0]).pack(Ok(), parent_id="a" * 32)
    with pytest.raises(ProtocolError, match="skew"):
        client.unpack(server_reply)
    assert isinstance(client.unpack(server_reply, is_fresh_reply=lambda p: p == "a" * 32)
                      .message, Ok)


def test_replay_guard_eviction_never_reopens_a_replay() -> None:
    now = [0.0]
    guard = ReplayGuard(window_s=300, max_ids=3, clock=lambda: now[0])
    for i in range(5):
        now[0] = float(i)
        guard.check(f"{i:032x}", float(i))
    assert len(guard._seen) == 3
    # id 0 and 1 were evicted while inside the window: replaying them must still fail.
    with pytest.raises(ProtocolError, match="replayed"):
        guard.check(f"{0:032x}", 0.0)
    now[0] = 400.0  # all old entries expire; fresh messages are fine again
    guard.check("f" * 32, 400.0)


def test_codec_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="key"):
        Codec(b"short")
    with pytest.raises(ValueError, match="window_s"):
        ReplayGuard(window_s=0)


def test_outgoing_oversize_is_refused_before_sending() -> None:
    from protocol import Limits

    codec = Codec(KEY, send_limits=Limits(max_buffer_bytes=1024))
    with pytest.raises(ProtocolError) as info:
        codec.pack(UploadChunk(upload_id="u", offset=0, data=np.zeros(2048, np.uint8)))
    assert info.value.code == ErrorCode.TOO_LARGE
    codec.pack(UploadChunk(upload_id="u", offset=0, data=np.zeros(1024, np.uint8)))


def test_client_sends_only_what_a_server_accepts() -> None:
    from protocol import REQUEST_LIMITS, Client

    client = Client(endpoint="tcp://127.0.0.1:9", key=KEY)
    assert client.codec.send_limits == REQUEST_LIMITS
    assert client.codec.limits.max_buffer_bytes == 256 << 20
    client.close()
