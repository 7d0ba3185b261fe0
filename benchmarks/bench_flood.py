"""Heartbeat latency of a running sidecar while unauthenticated peers flood its socket.

Starts a sidecar (tiny profile, CPU, tcp loopback: the transport any local user can reach)
and measures the round trip of `heartbeat` requests from a protocol client in four phases,
in one run:

* idle;
* during 10,000 malformed messages (random frames, forged auth tags, protocol-1 framing);
* during the oversize attack: 30 messages of 8 x 64 MiB frames behind a random auth tag
  (each frame is above the server's per-frame cap, so ZeroMQ drops the connection on the
  first frame's length);
* during 30 messages of 4 x 16 MiB frames behind a random auth tag (at the cap: ZeroMQ
  receives all of them; the server rejects each on its 36-byte tag before touching a
  buffer).

Attackers run in another process. Prints p50/p99/max latency per phase, p99 as a ratio to
idle, and the server's peak resident memory growth (VmHWM) per phase.

Usage (from the repository root): python benchmarks/bench_flood.py [--malformed 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from protocol import Client, Heartbeat
from protocol.codec import AUTH_MAGIC, LEGACY_SIGNATURE_BYTES

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[1]


def start_sidecar(workdir: Path) -> tuple[subprocess.Popen[str], Path]:
    command = [sys.executable, "-m", "sidecar.cli", "--workdir", str(workdir), "--profile",
               "tiny", "--device", "cpu", "--no-preload", "--bind", "tcp://127.0.0.1:0",
               "--log-level", "WARNING"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(workdir.parent / "sidecar-stderr.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=log, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("connection_file: "):
            return process, Path(line.split(": ", 1)[1].strip())
    raise RuntimeError("the sidecar exited before printing its connection file")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def malformed_messages(count: int, seed: int = 0) -> list[list[bytes]]:
    rng = np.random.default_rng(seed)
    kinds: list[Callable[[], list[bytes]]] = [
        lambda: [rng.bytes(int(rng.integers(0, 64)))],
        lambda: [AUTH_MAGIC + rng.bytes(32), rng.bytes(200), rng.bytes(60)],
        lambda: [rng.bytes(LEGACY_SIGNATURE_BYTES), rng.bytes(200), rng.bytes(60), rng.bytes(1000)],
        lambda: [AUTH_MAGIC + rng.bytes(32), *[rng.bytes(64)] * 40],
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]


def _attack(endpoint: str, messages: list[list[Any]], linger_ms: int) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.SNDHWM, 0)  # queue everything: the attacker does not wait for us
    sock.connect(endpoint)
    for frames in messages:
        sock.send_multipart(frames, copy=False)
    sock.close()  # lingers until sent (or linger_ms), so the phase lasts as long as the flood
    context.term()


def _oversize(endpoint: str, count: int, frames: int, frame_bytes: int) -> None:
    rng = np.random.default_rng(1)
    payload = memoryview(rng.integers(0, 256, frame_bytes, dtype=np.uint8))  # sent zero-copy
    messages = [[AUTH_MAGIC + rng.bytes(32), rng.bytes(200), *[payload] * frames]
                for _ in range(count)]
    _attack(endpoint, messages, linger_ms=120_000)


def _malformed(endpoint: str, count: int) -> None:
    _attack(endpoint, malformed_messages(count), linger_ms=60_000)


def heartbeats_while(client: Client, attacker: multiprocessing.Process | None,
                     samples: int = 300) -> list[float]:
    """Round-trip seconds of heartbeats until the attacker ends (or `samples` when idle)."""
    latencies: list[float] = []
    if attacker is not None:
        attacker.start()
    while (attacker.is_alive() or len(latencies) < 20) if attacker else len(latencies) < samples:
        start = time.perf_counter()
        client.request(Heartbeat(), timeout_s=30)
        latencies.append(time.perf_counter() - start)
        time.sleep(0.005)
    if attacker is not None:
        attacker.join()
    return latencies


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--malformed", type=int, default=10_000)
    parser.add_argument("--oversize-messages", type=int, default=30)
    args = parser.parse_args()
    fork = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="flood-") as root:
        process, connection_file = start_sidecar(Path(root) / "work")
        try:
            client = Client(connection_file, client_name="bench-flood")
            client.connect(timeout_s=60)
            endpoint = client.endpoint
            phases: list[tuple[str, multiprocessing.Process | None]] = [
                ("idle", None),
                (f"{args.malformed} malformed", fork.Process(
                    target=_malformed, args=(endpoint, args.malformed))),
                (f"{args.oversize_messages} x 8 x 64 MiB", fork.Process(
                    target=_oversize, args=(endpoint, args.oversize_messages, 8, 64 * MiB))),
                (f"{args.oversize_messages} x 4 x 16 MiB", fork.Process(
                    target=_oversize, args=(endpoint, args.oversize_messages, 4, 16 * MiB))),
            ]
            print(f"sidecar pid {process.pid} at {endpoint}; heartbeat round trips, ms")
            print(f"{'phase':24s} {'n':>5s} {'p50':>7s} {'p99':>7s} {'max':>7s} "
                  f"{'p99/idle':>8s} {'peak RSS +MiB':>13s} {'RSS after MiB':>13s}")
            idle_p99 = None
            for name, attacker in phases:
                before = memory_kib(process.pid)
                started = time.perf_counter()
                latencies = heartbeats_while(client, attacker)
                after = memory_kib(process.pid)
                peak_growth = max(0, after["VmHWM"] - max(before["VmHWM"], before["VmRSS"]))
                idle_p99 = idle_p99 or p99(latencies)
                print(f"{name:24s} {len(latencies):5d} {statistics.median(latencies) * 1e3:7.2f} "
                      f"{p99(latencies) * 1e3:7.2f} {max(latencies) * 1e3:7.2f} "
                      f"{p99(latencies) / idle_p99:8.2f} {peak_growth / 1024:13.0f} "
                      f"{after['VmRSS'] / 1024:13.0f}   ({time.perf_counter() - started:.1f} s)",
                      flush=True)
            client.close()
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
