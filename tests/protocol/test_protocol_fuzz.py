"""Whatever a key holder sends, decoding either succeeds or raises ProtocolError."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_frames import header, signed

from protocol import MESSAGE_TYPES, Codec, ProtocolError
from protocol.examples import example_messages
from protocol.wire import Limits, scan_msgpack, unpack_map

KEY = b"f" * 32

PROTOCOL_TYPES = sorted(n for n, c in MESSAGE_TYPES.items() if c.__module__ == "protocol.messages")
"""The protocol's own types (tests of other packages register theirs in the same table)."""


def _signed(head: dict | bytes, body: bytes, *buffers: bytes) -> list[bytes]:
    """Signed as a key holder would: sizes and digests match the frames sent."""
    return signed(head, body, *buffers, key=KEY)


def _header(type_name: str) -> dict:
    return header(type_name)


def _decode(frames: list[bytes]) -> None:
    with contextlib.suppress(ProtocolError):
        Codec(KEY).unpack(frames)


_json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
    | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(type_name=st.sampled_from(PROTOCOL_TYPES),
       body=st.dictionaries(st.text(max_size=16), _json_like, max_size=6),
       buffers=st.lists(st.binary(max_size=64), max_size=3))
def test_random_signed_bodies_never_crash(type_name: str, body: dict, buffers: list) -> None:
    _decode(_signed(_header(type_name), msgpack.packb(body), *buffers))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(type_name=st.sampled_from(sorted(example_messages())), data=st.data())
def test_mutated_valid_bodies_never_crash(type_name: str, data: st.DataObject) -> None:
    frames = [bytes(memoryview(f)) for f in Codec(KEY).pack(example_messages()[type_name])]
    body = msgpack.unpackb(frames[2])
    key = data.draw(st.sampled_from(sorted(body))) if body else None
    if key is not None:
        body[key] = data.draw(_json_like)
    _decode(_signed(_header(type_name), msgpack.packb(body), *frames[3:]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_in_header_and_body_never_crash(blob: bytes) -> None:
    _decode(_signed(blob, blob))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_scanner_agrees_with_msgpack(blob: bytes) -> None:
    """Whatever the scanner accepts, msgpack decodes completely (no trailing data)."""
    try:
        scan_msgpack(memoryview(blob), Limits())
    except ProtocolError:
        return
    try:
        msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except (UnicodeDecodeError, ValueError) as exc:
        # Only content errors (not structure) may remain for msgpack to find.
        assert "utf-8" in str(exc).lower() or isinstance(exc, UnicodeDecodeError), exc


@pytest.mark.parametrize("depth", [15, 16, 17])
def test_nesting_limit_is_exact(depth: int) -> None:
    blob = b"\x91" * depth + b"\xc0"
    if depth < 16:
        scan_msgpack(memoryview(blob), Limits())
    else:
        with pytest.raises(ProtocolError, match="nesting"):
            scan_msgpack(memoryview(blob), Limits())


@pytest.mark.parametrize("depth", [14, 15, 16])
@pytest.mark.parametrize("pad", [0, 2000], ids=["small-frame", "scanned-frame"])
def test_small_and_scanned_frames_share_the_nesting_limit(depth: int, pad: int) -> None:
    # {"a": [[...nil]], "p": "xx..."}: the map is level 1, so `depth` lists reach depth + 1.
    blob = b"\x82\xa1a" + b"\x91" * depth + b"\xc0" + b"\xa1p" + msgpack.packb("x" * pad)
    if depth + 1 < 16:
        assert unpack_map(memoryview(blob), Limits(), 1 << 20, "body")["p"] == "x" * pad
    else:
        with pytest.raises(ProtocolError, match="nesting"):
            unpack_map(memoryview(blob), Limits(), 1 << 20, "body")


@pytest.mark.parametrize("tag", [b"\xdd", b"\xdf"], ids=["array32", "map32"])
def test_small_frame_cannot_declare_more_items_than_it_has_bytes(tag: bytes) -> None:
    blob = b"\x81\xa1a" + tag + b"\x00\x01\x00\x00"  # declares 65536 items in 11 bytes
    with pytest.raises(ProtocolError) as info:
        unpack_map(memoryview(blob), Limits(), 1 << 20, "body")
    assert info.value.code == "bad_msgpack"
