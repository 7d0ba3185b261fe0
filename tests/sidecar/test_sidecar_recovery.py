"""kill -9 of the sidecar mid-job, then a restart: nothing finished lost, nothing orphaned."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import sidecar_test_jobs as tj
from sidecar_harness import start_sidecar, wait_for_events

from protocol import messages as m


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_kill_9_mid_job_then_restart(tmp_path) -> None:
    first = start_sidecar(tmp_path)
    client = first.client()
    session = client.request(m.SessionCreate(name="killed"))
    done = client.request(tj.TestCount(session_id=session.session_id, steps=2))
    wait_for_events(client, lambda e: e.header.type == "job.finished"
                    and e.message.job_id == done.job_id)
    running = client.request(tj.TestCount(session_id=session.session_id, steps=100_000))
    wait_for_events(client, lambda e: e.header.type == "job.progress"
                    and e.message.job_id == running.job_id)
    workers = children(first.process.pid)
    assert workers, "the job runs in a child process"
    client.close()
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "the worker must die with the sidecar"

    second = start_sidecar(tmp_path)  # the kernel released the dead process's lock
    client = second.client()
    assert [s.session_id for s in client.server.sessions] == [session.session_id]
    history = json.loads(
        (tmp_path / "sessions" / session.session_id / "session.json").read_text())["jobs"]
    states = {job["id"]: job for job in history}
    assert states[done.job_id]["state"] == "finished"
    assert states[running.job_id]["state"] == "failed"
    assert states[running.job_id]["reason"] == "sidecar_stopped"
    # a client asking about a job of the killed run gets its recorded outcome
    status = client.request(m.JobStatus(job_id=running.job_id))
    assert status.jobs[0].state == "failed" and "stopped" in status.jobs[0].message
    listed = client.request(m.JobStatus(session_id=session.session_id))
    assert {info.job_id for info in listed.jobs} >= {done.job_id, running.job_id}
    # event numbers keep increasing across the restart, and a stale resync says so
    opened = client.request(m.SessionOpen(session_id=session.session_id))
    replay = client.request(m.EventsSince(session_id=session.session_id, after_seq=3))
    assert not replay.complete
    job = client.request(tj.TestCount(session_id=session.session_id, steps=1))
    seen = wait_for_events(client, lambda e: e.header.type == "job.finished"
                           and e.message.job_id == job.job_id)
    assert opened.last_seq >= 256  # started above anything the killed run can have sent
    assert min(e.header.seq for e in seen if e.header.seq) == opened.last_seq + 1
    client.close()
    second.terminate()
