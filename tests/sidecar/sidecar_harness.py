"""Start a real `edit3d-sidecar` subprocess and talk to it with the real protocol Client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.client import Client
from protocol.messages import Message

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass
class RunningSidecar:
    process: subprocess.Popen
    workdir: Path
    endpoint: str
    connection_file: Path

    def client(self, name: str = "test") -> Client:
        client = Client(self.connection_file, client_name=name)
        client.connect(timeout_s=20.0)
        return client

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        """stdout+stderr so far (only once the process ended)."""
        out, err = self.process.communicate(timeout=5) if self.process.poll() is not None else (
            "", "")
        return (out or "") + (err or "")


def start_sidecar(workdir: Path, *extra: str, timeout: float = 60.0,
                  preload: bool = False) -> RunningSidecar:
    """Lifecycle tests skip the preloading of edit3d (CPU time); method tests keep it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "sidecar.cli", "--workdir", str(workdir),
               "--profile", "tiny", "--device", "cpu", "--job-module", "sidecar_test_jobs",
               "--log-level", "WARNING", *([] if preload else ["--no-preload"]), *extra]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while "connection_file" not in fields:
        line = process.stdout.readline()
        if not line:
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"sidecar exited early ({process.returncode}): {err}")
        key, _, value = line.strip().partition(": ")
        fields[key] = value
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("sidecar did not print its endpoint in time")
    return RunningSidecar(process, workdir, fields["endpoint"], Path(fields["connection_file"]))


def wait_for_events(client: Client, predicate, timeout: float = 30.0) -> list:
    """Poll until an event/reply satisfying `predicate` arrives; returns everything seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for envelope in client.poll(timeout_ms=20):
            seen.append(envelope)
            if predicate(envelope):
                return seen
    raise AssertionError(f"no matching event within {timeout} s; saw "
                         f"{[e.header.type for e in seen]}")


def of_type(envelopes: list, type_name: str, job_id: str | None = None) -> list[Message]:
    return [e.message for e in envelopes if e.header.type == type_name
            and (job_id is None or getattr(e.message, "job_id", None) == job_id)]
