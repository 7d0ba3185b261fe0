"""kill -9 of the sidecar mid-job, then a restart: nothing finished lost, nothing orphaned."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import sidecar_test_jobs as tj
from sidecar_harness import of_type, start_sidecar, wait_for_events

from edit3d.scene.sample import make_sample_scene
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


def worker_of(sidecar_pid: int) -> int:
    """The job worker among the sidecar's children (not multiprocessing's resource tracker)."""
    for pid in children(sidecar_pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in cmdline and alive(pid):
            return pid
    raise AssertionError(f"no worker among {children(sidecar_pid)}")


def kill_worker_and_wait(sidecar, client, job_id: str) -> m.JobFailed:
    os.kill(worker_of(sidecar.process.pid), signal.SIGKILL)
    seen = wait_for_events(client, lambda e: e.header.type in ("job.failed", "job.finished")
                           and e.message.job_id == job_id, timeout=60)
    assert seen[-1].header.type == "job.failed"
    assert "SIGKILL" in seen[-1].message.reason
    return seen[-1].message


def run_to_end(client, job_id: str, timeout: float = 300.0) -> list:
    seen = wait_for_events(client, lambda e: e.header.type in (
        "job.finished", "job.failed", "job.cancelled") and e.message.job_id == job_id,
        timeout=timeout)
    assert seen[-1].header.type == "job.finished", seen[-1].message
    return seen


def turns_of(client, session_id: str) -> dict:
    summary = client.request(m.SessionOpen(session_id=session_id))
    return {turn.turn_id: turn for turn in summary.turns}


@pytest.mark.slow
def test_worker_killed_mid_base_and_mid_turn_then_resumed_in_the_same_run(tmp_path) -> None:
    scene = make_sample_scene(tmp_path / "scene", num_views=24, resolution=32)
    sidecar = start_sidecar(tmp_path / "work", "--data-root", str(scene.root), preload=True)
    client = sidecar.client()
    created = client.request(m.SessionCreate(name="crashes", dataset_path=str(scene.root),
                                             preset="tiny"))
    sid = created.session_id
    client.follow(sid, created.last_seq)
    run_to_end(client, wait_for_events(client, lambda e: e.header.type == "job.queued")[-1]
               .message.job_id)  # session.prepare

    base = client.request(m.JobTrainBase(session_id=sid, steps=100_000))
    wait_for_events(client, lambda e: e.header.type == "job.progress"
                    and e.message.job_id == base.job_id and e.message.step >= 1)
    kill_worker_and_wait(sidecar, client, base.job_id)
    assert turns_of(client, sid)["base"].status == "interrupted"  # released, not "running"
    again = client.request(m.JobTrainBase(session_id=sid, steps=120))
    run_to_end(client, again.job_id)
    assert turns_of(client, sid)["base"].status == "finished"

    turn = client.request(m.JobRunTurn(session_id=sid, instruction="paint it red", steps=70,
                                       seed=1))
    checkpoint = sidecar.workdir / "sessions" / sid / "workspace/turns/turn-0001/checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists():  # the periodic checkpoint (every 50 steps here)
        assert time.monotonic() < deadline
        client.poll(timeout_ms=100)
    kill_worker_and_wait(sidecar, client, turn.job_id)
    interrupted = turns_of(client, sid)["turn-0001"]
    assert interrupted.status == "interrupted" and interrupted.step == 50  # its checkpoint's
    resume = client.request(m.JobResumeTurn(session_id=sid, turn_id="turn-0001"))
    seen = run_to_end(client, resume.job_id)
    steps = [p.step for p in of_type(seen, "job.progress", resume.job_id) if p.total == 70]
    assert steps and steps[0] > 50 and steps[-1] == 70
    assert turns_of(client, sid)["turn-0001"].status == "finished"

    branch = client.request(m.JobRunTurn(session_id=sid, instruction="make it blue",
                                         steps=500))
    wait_for_events(client, lambda e: e.header.type == "job.progress"
                    and e.message.job_id == branch.job_id and e.message.total == 500)
    kill_worker_and_wait(sidecar, client, branch.job_id)
    assert turns_of(client, sid)["turn-0002"].status == "interrupted"
    discard = client.request(m.JobDiscardTurn(session_id=sid, turn_id="turn-0002"))
    run_to_end(client, discard.job_id)
    assert list(turns_of(client, sid)) == ["base", "turn-0001"]
    client.close()
    sidecar.terminate()


def test_an_interrupted_node_reports_the_step_of_its_checkpoint(tmp_path) -> None:
    import torch

    from edit3d.editing.turns import STATE_NAME
    from edit3d.workspace import BASE_ID, Workspace
    from sidecar import workspaces

    (tmp_path / "data").mkdir()
    workspace = Workspace.create(tmp_path / "ws", dataset=tmp_path / "data", preset="tiny")
    base = workspace._start_node(BASE_ID, None, "base", {"steps": 300})
    assert workspaces.summarize(tmp_path / "ws").turns[0].step == 0  # no checkpoint yet
    torch.save({"step": 150, "model": {"w": torch.zeros(1000)}},
               tmp_path / "ws" / base.paths["checkpoint"])
    assert workspaces.release_running(tmp_path / "ws", "killed") == ["base"]
    (summary,) = workspaces.summarize(tmp_path / "ws").turns
    assert summary.status == "interrupted" and summary.step == 150
    workspace = Workspace.open(tmp_path / "ws")
    workspace._finish(BASE_ID, steps=300)
    turn = workspace._start_node("turn-0001", BASE_ID, "edit", {"steps": 70})
    (tmp_path / "ws" / turn.paths["dir"] / STATE_NAME).write_text(json.dumps({"next_step": 50}))
    workspaces.release_running(tmp_path / "ws", "killed")
    steps = {t.turn_id: (t.status, t.step) for t in workspaces.summarize(tmp_path / "ws").turns}
    assert steps == {"base": ("finished", 300), "turn-0001": ("interrupted", 50)}
