"""Throughput of the full protocol vs raw pyzmq for the same bytes, over tcp loopback.

Two payloads: a 512x512 RGBA uint8 preview frame (`job.preview`) and a 1M-point cloud
(float32 positions + uint8 colours, `export.result`). "protocol" = pack + HMAC-sign on the
sender, send (zero-copy), receive, verify + decode (zero-copy) on the receiver, through a
DEALER->ROUTER pair as the sidecar uses it. "raw" = the same array bytes as frames through
the same socket pair, received zero-copy and wrapped with np.frombuffer. Runs alternate
(raw, protocol, raw, ...) so background load hits both alike; medians are reported.

Usage (from the repository root): python benchmarks/bench_protocol.py [--repeats 5] [--seconds 1]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from protocol import Codec, ExportResult, JobPreview, Message

KEY = b"b" * 32
Sender = Callable[[zmq.Socket[Any]], None]
Receiver = Callable[[zmq.Socket[Any]], int]


def payloads() -> dict[str, Message]:
    rng = np.random.default_rng(0)
    preview = JobPreview(job_id="bench", step=1,
                         image=rng.integers(0, 256, (512, 512, 4), dtype=np.uint8))
    cloud = ExportResult(job_id="bench", kind="point_cloud", format="ply", path="exports/p.ply",
                         points=rng.random((1_000_000, 3), dtype=np.float32),
                         colors=rng.integers(0, 256, (1_000_000, 3), dtype=np.uint8))
    return {"preview 512x512 RGBA": preview, "point cloud 1M": cloud}


def socket_pair() -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    return dealer, router


def run(sender: Sender, receiver: Receiver, count: int) -> tuple[float, int]:
    """Seconds to move `count` messages and the payload bytes received."""
    dealer, router = socket_pair()
    try:
        # Warm-up message so connection setup is not timed.
        dealer.send(b"hello")
        router.recv_multipart()

        def send_all() -> None:
            for _ in range(count):
                sender(dealer)

        thread = threading.Thread(target=send_all)
        start = time.perf_counter()
        thread.start()
        received = sum(receiver(router) for _ in range(count))
        elapsed = time.perf_counter() - start
        thread.join()
        return elapsed, received
    finally:
        dealer.close(linger=0)
        router.close(linger=0)


def protocol_side(message: Message) -> tuple[Sender, Receiver]:
    send_codec, recv_codec = Codec(KEY), Codec(KEY)

    def send(sock: zmq.Socket[Any]) -> None:
        sock.send_multipart(send_codec.pack(message), copy=False)

    def receive(sock: zmq.Socket[Any]) -> int:
        frames = sock.recv_multipart(copy=False)
        decoded = recv_codec.unpack(frames[1:]).message
        return sum(v.nbytes for v in vars(decoded).values() if isinstance(v, np.ndarray))

    return send, receive


def raw_side(message: Message) -> tuple[Sender, Receiver]:
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


def hmac_seconds(message: Message, repeats: int = 5) -> float:
    """Median seconds to HMAC-sign one message's frames (the receiver pays it again)."""
    codec = Codec(KEY)
    frames = codec.pack(message)[1:]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        codec.sign(frames)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_for(message: Message, seconds: float) -> int:
    send, receive = raw_side(message)
    elapsed, _ = run(send, receive, 3)
    return max(5, int(seconds / (elapsed / 3)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per side")
    parser.add_argument("--seconds", type=float, default=1.0, help="target seconds per run")
    args = parser.parse_args()
    print(f"pyzmq {zmq.pyzmq_version()} / libzmq {zmq.zmq_version()}, tcp loopback, "
          f"{args.repeats} alternating runs per side, medians")
    print(f"{'payload':24s} {'MB/msg':>7s} {'raw MB/s':>9s} {'proto MB/s':>10s} "
          f"{'raw msg/s':>9s} {'proto msg/s':>11s} {'ratio':>6s}")
    notes: list[tuple[str, float, float, float]] = []
    for name, message in payloads().items():
        count = count_for(message, args.seconds)
        rates: dict[str, list[float]] = {"raw": [], "protocol": []}
        nbytes = 0
        for _ in range(args.repeats):
            for side, make in (("raw", raw_side), ("protocol", protocol_side)):
                elapsed, received = run(*make(message), count)
                nbytes = received // count
                rates[side].append(count / elapsed)
        raw = statistics.median(rates["raw"])
        proto = statistics.median(rates["protocol"])
        mb = nbytes / 1e6
        print(f"{name:24s} {mb:7.2f} {raw * mb:9.0f} {proto * mb:10.0f} {raw:9.1f} "
              f"{proto:11.1f} {proto / raw:6.2f}")
        notes.append((name, mb, hmac_seconds(message), 1 / raw))
    # Signing and verifying each hash every byte once: if they do not overlap, the ratio
    # cannot exceed raw / (raw + 2 * hmac) whatever the codec does.
    for name, mb, hmac_s, raw_s in notes:
        print(f"{name}: HMAC-SHA256 {mb / hmac_s:.0f} MB/s on this CPU; serial sign+verify "
              f"bound on the ratio {raw_s / (raw_s + 2 * hmac_s):.2f}")


if __name__ == "__main__":
    main()
