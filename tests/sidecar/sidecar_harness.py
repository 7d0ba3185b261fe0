"""Start a real `edit3d-sidecar` subprocess and talk to it with the real protocol Client."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from protocol.client import Client
from protocol.messages import Message

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
_STARTED: list[subprocess.Popen] = []


@atexit.register
def _kill_leftovers() -> None:
    """A test that failed before stopping its sidecar must not leave it running."""
    for process in _STARTED:
        if process.poll() is None:
            process.kill()
            process.wait()


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


def start_sidecar(workdir: Path, *extra: str, timeout: float = 60.0,
                  preload: bool = False) -> RunningSidecar:
    """Lifecycle tests skip the preloading of edit3d (CPU time); method tests keep it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "sidecar.cli", "--workdir", str(workdir),
               "--profile", "tiny", "--device", "cpu", "--job-module", "sidecar_test_jobs",
               "--log-level", "WARNING", *([] if preload else ["--no-preload"]), *extra]
    workdir.mkdir(parents=True, exist_ok=True)
    # A file, not a pipe nobody reads: a chatty stderr must never block the sidecar.
    with open(workdir.parent / f"{workdir.name}-stderr.log", "a") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=log, text=True)
    _STARTED.append(process)
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while "connection_file" not in fields:
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=10)
            raise RuntimeError(f"sidecar exited early ({process.returncode})")
        key, _, value = line.strip().partition(": ")
        fields[key] = value
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("sidecar did not print its endpoint in time")
    return RunningSidecar(process, workdir, fields["endpoint"], Path(fields["connection_file"]))


def wait_for_events(client: Client, predicate, timeout: float = 30.0) -> list:
    """Poll until an event/reply satisfying `predicate` arrives; returns everything seen up
    to it. What arrived after it in the same batch is kept for the next call."""
    backlog: deque = client.__dict__.setdefault("_test_backlog", deque())
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        while backlog:
            envelope = backlog.popleft()
            seen.append(envelope)
            if predicate(envelope):
                return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching event within {timeout} s; saw "
                                 f"{[e.header.type for e in seen]}")
        backlog.extend(client.poll(timeout_ms=20))


def of_type(envelopes: list, type_name: str, job_id: str | None = None) -> list[Message]:
    return [e.message for e in envelopes if e.header.type == type_name
            and (job_id is None or getattr(e.message, "job_id", None) == job_id)]
