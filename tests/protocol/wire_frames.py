"""Hand-built frames for hostile-input tests: what a key holder (or a forger) could send."""

from __future__ import annotations

import hashlib
import time
import uuid

import msgpack

from protocol import PROTOCOL_VERSION, Codec


def header(type_name: str = "heartbeat", **overrides: object) -> dict[str, object]:
    """A header map; `sizes` and `digests` are filled in by `signed` unless given here."""
    fields: dict[str, object] = {
        "v": list(PROTOCOL_VERSION), "type": type_name, "msg_id": uuid.uuid4().hex,
        "parent_id": None, "ts": time.time(), "session": None, "seq": None, "sender": None}
    fields.update(overrides)
    return fields


def signed(head: dict[str, object] | bytes, body: dict[str, object] | bytes, *buffers: bytes,
           key: bytes, digests: bool = True) -> list[bytes]:
    """[auth, header, body, *buffers] with a valid auth tag over `head` (as given)."""
    body_frame = body if isinstance(body, bytes) else msgpack.packb(body)
    payload = [body_frame, *buffers]
    if isinstance(head, dict):
        head = dict(head)
        head.setdefault("sizes", [len(f) for f in payload])
        if digests:
            head.setdefault("digests", [hashlib.sha256(f).hexdigest() for f in payload])
        head = msgpack.packb(head)
    return [Codec(key).auth_tag(head), head, *payload]
