"""Throughput of the full protocol vs raw pyzmq for the same bytes, per transport.

Two payloads: a 512x512 RGBA uint8 preview frame (`job.preview`) and a 1M-point cloud
(float32 positions + uint8 colours, `export.result`). Three configurations, each measured
against raw pyzmq on the *same* transport:

* local  - the sidecar's default on Linux/macOS: ipc:// in a 0700 directory. The socket's
  permissions authenticate every byte, so only the header is MACed (no buffer digests).
* remote - tcp with CURVE (a remote sidecar): CURVE's per-message MAC covers every byte,
  so again only the header is MACed.
* tcp    - plain tcp loopback (Windows' local default, or no ipc://): SHA-256 of every
  buffer on both sides, bound into the MACed header.

"protocol" = pack + sign in a sender process, send (zero-copy), receive, verify + decode
(zero-copy) in the receiving process, through a DEALER->ROUTER pair: two processes, as the
sidecar and Blender are. "raw" = the same array bytes as frames through the same kind of
socket pair, received zero-copy and wrapped with np.frombuffer. Both use queues of 16
messages each way. Runs alternate (raw, protocol, raw, ...) so background load hits both
alike; medians are reported. The protocol's cost is fixed per message (~40 us to pack,
~40-80 us to verify and decode in Python here), so it shows on the 1 MB frame, hardly on
the 15 MB cloud.

Usage (from the repository root):
    python benchmarks/bench_protocol.py [--repeats 5] [--seconds 1] [--config local ...]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from protocol import Codec, ExportResult, JobPreview, Message
from protocol.connection import curve_keypair, private_ipc_endpoint

KEY = b"b" * 32
SENDER = "bench-client"
QUEUE_MESSAGES = 16
"""Send and receive queues hold this many messages (raw and protocol alike): steady-state
throughput, not the cost of buffering a thousand 15 MB messages in fresh memory."""
Sender = Callable[[zmq.Socket[Any]], None]
Receiver = Callable[[zmq.Socket[Any]], int]


@dataclass(frozen=True)
class Transport:
    """One way of connecting a DEALER to a ROUTER."""

    name: str
    buffer_digests: bool
    """What the protocol needs on it: digests unless the transport authenticates."""
    ipc_dir: Path | None = None
    curve: tuple[str, str] | None = None

    def bind(self, context: zmq.Context[Any]) -> tuple[zmq.Socket[Any], str]:
        router = context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.RCVHWM, QUEUE_MESSAGES)
        if self.curve is not None:
            router.curve_secretkey, router.curve_server = self.curve[1].encode(), True
        if self.ipc_dir is not None:
            endpoint = private_ipc_endpoint(self.ipc_dir)
            router.bind(endpoint)
            return router, endpoint
        return router, f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"

    def connect(self, context: zmq.Context[Any], endpoint: str) -> zmq.Socket[Any]:
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.ROUTING_ID, SENDER.encode())
        dealer.setsockopt(zmq.SNDHWM, QUEUE_MESSAGES)
        if self.curve is not None:
            client_public, client_secret = curve_keypair()
            dealer.curve_serverkey = self.curve[0].encode()
            dealer.curve_publickey = client_public.encode()
            dealer.curve_secretkey = client_secret.encode()
        dealer.connect(endpoint)
        return dealer


def transports(root: Path, names: list[str]) -> list[Transport]:
    known = {
        "local": Transport("local (ipc://, private dir)", False, ipc_dir=root / "ipc"),
        "remote": Transport("remote (tcp + CURVE)", False, curve=curve_keypair()),
        "tcp": Transport("tcp loopback (digests)", True),
    }
    return [known[name] for name in names]


def payloads() -> dict[str, Message]:
    rng = np.random.default_rng(0)
    preview = JobPreview(job_id="bench", step=1,
                         image=rng.integers(0, 256, (512, 512, 4), dtype=np.uint8))
    cloud = ExportResult(job_id="bench", kind="point_cloud", format="ply", path="exports/p.ply",
                         points=rng.random((1_000_000, 3), dtype=np.float32),
                         colors=rng.integers(0, 256, (1_000_000, 3), dtype=np.uint8))
    return {"preview 512x512 RGBA": preview, "point cloud 1M": cloud}


def run(transport: Transport, side: str, message: Message, count: int) -> tuple[float, int]:
    """Seconds to move `count` messages from a sender process, and the bytes received."""
    make = SIDES[side]
    router, endpoint = transport.bind(zmq.Context.instance())
    receive = make(message, transport)[1]
    sender = multiprocessing.get_context("fork").Process(
        target=_send_all, args=(transport, side, message, count, endpoint))
    try:
        sender.start()
        router.recv_multipart()  # the sender is connected (and through CURVE's handshake)
        start = time.perf_counter()
        received = sum(receive(router) for _ in range(count))
        elapsed = time.perf_counter() - start
        sender.join()
        return elapsed, received
    finally:
        router.close(linger=0)
        if sender.is_alive():
            sender.kill()


def _send_all(transport: Transport, side: str, message: Message, count: int,
              endpoint: str) -> None:
    context = zmq.Context()  # never a context inherited through fork
    dealer = transport.connect(context, endpoint)
    send = SIDES[side](message, transport)[0]
    dealer.send(b"hello")
    for _ in range(count):
        send(dealer)
    dealer.close(linger=-1)  # wait until everything is delivered
    context.term()


def protocol_side(message: Message, transport: Transport) -> tuple[Sender, Receiver]:
    send_codec = Codec(KEY, buffer_digests=transport.buffer_digests)
    recv_codec = Codec(KEY, buffer_digests=transport.buffer_digests)

    def send(sock: zmq.Socket[Any]) -> None:
        sock.send_multipart(send_codec.pack(message, sender=SENDER), copy=False)

    def receive(sock: zmq.Socket[Any]) -> int:
        frames = sock.recv_multipart(copy=False)
        decoded = recv_codec.unpack(frames[1:], sender=frames[0].bytes).message
        return sum(v.nbytes for v in vars(decoded).values() if isinstance(v, np.ndarray))

    return send, receive


def raw_side(message: Message, _transport: Transport) -> tuple[Sender, Receiver]:
    arrays = [v for v in vars(message).values() if isinstance(v, np.ndarray)]
    buffers = [memoryview(a.reshape(-1).view(np.uint8)) for a in arrays]
    meta = [(a.dtype, a.shape) for a in arrays]

    def send(sock: zmq.Socket[Any]) -> None:
        sock.send_multipart(buffers, copy=False)

    def receive(sock: zmq.Socket[Any]) -> int:
        frames = sock.recv_multipart(copy=False)[1:]
        views = [np.frombuffer(f.buffer, dtype).reshape(shape)
                 for f, (dtype, shape) in zip(frames, meta, strict=True)]
        return sum(v.nbytes for v in views)

    return send, receive


SIDES = {"raw": raw_side, "protocol": protocol_side}


def hash_rates(nbytes: int = 16 << 20) -> dict[str, float]:
    """GB/s of the stdlib hashes a per-byte pass could use, on this CPU."""
    data = np.random.default_rng(1).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    rates = {}
    for name, digest in (("sha256", lambda: hashlib.sha256(data).digest()),
                         ("blake2b", lambda: hashlib.blake2b(data, key=KEY).digest())):
        best = min(_timed(digest) for _ in range(5))
        rates[name] = nbytes / best / 1e9
    return rates


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def count_for(transport: Transport, message: Message, seconds: float) -> int:
    elapsed, _ = run(transport, "raw", message, 3)
    return max(5, int(seconds / (elapsed / 3)))


def measure(transport: Transport, name: str, message: Message, repeats: int,
            seconds: float) -> tuple[float, float, float]:
    """(MB per message, raw msg/s, protocol msg/s), medians of alternating runs."""
    count = count_for(transport, message, seconds)
    rates: dict[str, list[float]] = {"raw": [], "protocol": []}
    nbytes = 0
    for _ in range(repeats):
        for side in ("raw", "protocol"):
            elapsed, received = run(transport, side, message, count)
            nbytes = received // count
            rates[side].append(count / elapsed)
    return nbytes / 1e6, statistics.median(rates["raw"]), statistics.median(rates["protocol"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per side")
    parser.add_argument("--seconds", type=float, default=1.0, help="target seconds per run")
    parser.add_argument("--config", action="append", choices=("local", "remote", "tcp"),
                        help="transport(s) to measure (default: all three)")
    args = parser.parse_args()
    print(f"pyzmq {zmq.pyzmq_version()} / libzmq {zmq.zmq_version()}, {args.repeats} "
          "alternating runs per side, medians; ratio = protocol / raw on the same transport")
    print(f"{'transport':28s} {'payload':22s} {'MB/msg':>7s} {'raw MB/s':>9s} "
          f"{'proto MB/s':>10s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory(prefix="bench-") as root:
        for transport in transports(Path(root), args.config or ["local", "remote", "tcp"]):
            for name, message in payloads().items():
                mb, raw, proto = measure(transport, name, message, args.repeats, args.seconds)
                print(f"{transport.name:28s} {name:22s} {mb:7.2f} {raw * mb:9.0f} "
                      f"{proto * mb:10.0f} {proto / raw:6.2f}", flush=True)
    rates = hash_rates()
    print("per-byte hashing on this CPU: " + ", ".join(f"{k} {v:.2f} GB/s"
                                                     for k, v in rates.items()))
    print("(tcp pays SHA-256 of every buffer once on each side; local and remote pay none)")


if __name__ == "__main__":
    main()
