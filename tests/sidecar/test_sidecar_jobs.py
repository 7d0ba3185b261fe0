"""JobManager with a real worker process: lifecycle, cancel, failures, crashes."""

from __future__ import annotations

import dataclasses
import pickle
import time

import numpy as np
import pytest
import sidecar_test_jobs as tj  # registers the test kinds in this process

from protocol import ProtocolError
from protocol import messages as m
from sidecar import pipe
from sidecar.errors import SidecarError
from sidecar.jobs import Job, JobLimits, JobManager
from sidecar.kinds import (
    DEFAULT_JOB_MODULES,
    JobKind,
    get_job_kind,
    load_job_modules,
    register_job_kind,
)
from sidecar.worker import WorkerOptions

load_job_modules(DEFAULT_JOB_MODULES)  # the built-in kinds, to check which are interactive
OPTIONS = WorkerOptions(device="cpu", profile="tiny", job_modules=("sidecar_test_jobs",))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def __call__(self, job: Job, kind: str, data: dict) -> None:
        self.events.append((job.id, kind, data))

    def kinds(self, job_id: str) -> list[str]:
        return [kind for jid, kind, _ in self.events if jid == job_id]


def submit(manager: JobManager, kind: str, **fields) -> Job:
    """Queue a session-less job of `kind` with its request record built from `fields`."""
    request_type = get_job_kind(kind).request
    if "session_id" in {f.name for f in dataclasses.fields(request_type)}:
        fields.setdefault("session_id", "s1")
    return manager.submit(kind, None, request_type(**fields))


def pump_until(manager: JobManager, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        manager.poll()
        time.sleep(0.005)


@pytest.fixture
def manager():
    recorder = Recorder()
    manager = JobManager(OPTIONS, recorder, JobLimits(cancel_grace_s=3.0))
    manager.recorder = recorder  # type: ignore[attr-defined]
    yield manager
    manager.shutdown(timeout_s=5.0)


def test_fifo_positions_progress_and_warm_worker(manager) -> None:
    first = submit(manager, "test.count", steps=3, delay_s=0.05)
    second = submit(manager, "test.count", steps=2, delay_s=0.0, preview=True)
    assert manager.position(first) == 1 and manager.position(second) == 2
    manager.poll()
    assert first.state == "running" and manager.position(first) == 0
    assert manager.position(second) == 1
    pump_until(manager, lambda: second.state == "finished")
    assert first.state == "finished"
    assert first.result["counted"] == 3
    # the same warm process ran both; its cache survived between jobs
    assert second.result["worker_pid"] == first.result["worker_pid"]
    assert second.result["warm_runs"] == 2
    kinds = manager.recorder.kinds(first.id)
    assert kinds[0] == "job.queued" and kinds[1] == "job.started" and kinds[-1] == "job.finished"
    steps = [d["step"] for jid, k, d in manager.recorder.events
             if jid == first.id and k == "job.progress"]
    assert steps[-1] == 3 and steps == sorted(steps)
    previews = [d for jid, k, d in manager.recorder.events
                if jid == second.id and k == "job.preview"]
    assert previews[0]["image"].shape == (4, 6, 3)
    assert previews[0]["image"][0, 0].tolist() == [1.0, 0.5, 0.25]
    assert first.last_progress_at is not None


def test_previews_go_ahead_of_waiting_long_jobs_of_any_session(manager) -> None:
    """The rule in docs/sidecar.md: an interactive job (render, mask or edit preview) waits
    for the running job only, never behind a queued turn, whichever session queued it."""
    running = manager.submit("test.count", None, tj.TestCount(session_id="s1", steps=10_000))
    pump_until(manager, lambda: running.state == "running")
    turn = manager.submit("test.count", None, tj.TestCount(session_id="s2", steps=1))
    first_look = manager.submit("test.look", None, tj.NoFields())
    second_look = manager.submit("test.look", None, tj.NoFields())
    assert [manager.position(j) for j in (first_look, second_look, turn)] == [1, 2, 3]
    moved = [d["position"] for jid, k, d in manager.recorder.events
             if jid == turn.id and k == "job.position"]
    assert moved[-1] == 3  # the overtaken job is told its new place
    manager.cancel(running.id)
    pump_until(manager, lambda: turn.state == "finished")
    started = [jid for jid, kind, _ in manager.recorder.events if kind == "job.started"]
    assert started == [running.id, first_look.id, second_look.id, turn.id]
    for kind in ("job.render", "job.preview_masks", "job.preview_edit"):
        assert get_job_kind(kind).interactive, kind
    for kind in ("job.train_base", "job.run_turn", "job.resume_turn", "job.refine"):
        assert not get_job_kind(kind).interactive, kind


def test_cancel_running_is_prompt_and_queued_is_immediate(manager) -> None:
    running = submit(manager, "test.count", steps=10_000, delay_s=0.01)
    waiting = submit(manager, "test.count", steps=1)
    pump_until(manager, lambda: running.progress is not None)
    manager.cancel(waiting.id)
    assert waiting.state == "cancelled"
    manager.cancel(running.id)
    pump_until(manager, lambda: running.state != "running")
    assert running.state == "cancelled"
    assert running.cancel_latency_s is not None and running.cancel_latency_s < 0.5
    assert running.progress["step"] < 10_000


def test_exception_fails_with_traceback_and_worker_survives(manager) -> None:
    bad = submit(manager, "test.raise")
    good = submit(manager, "test.count", steps=1)
    pump_until(manager, lambda: good.state in ("finished", "failed"))
    assert bad.state == "failed" and bad.reason == "exception"
    assert "deliberate failure in test.raise" in bad.error
    assert "Traceback" in bad.traceback and "raise_error" in bad.traceback
    assert good.state == "finished"
    assert manager.worker_restarts == 0


@pytest.mark.parametrize(("kind", "signal_name"), [("test.abort", "SIGABRT"),
                                                    ("test.segfault", "SIGSEGV")])
def test_worker_crash_fails_only_that_job(manager, kind: str, signal_name: str) -> None:
    crash = submit(manager, kind)
    after = submit(manager, "test.count", steps=2)
    pump_until(manager, lambda: after.state in ("finished", "failed"))
    assert crash.state == "failed" and crash.reason == "worker_crashed"
    assert signal_name in crash.error
    assert after.state == "finished"
    assert manager.worker_restarts == 1


def test_job_that_ignores_cancel_is_killed_after_the_grace(manager) -> None:
    stuck = submit(manager, "test.ignore_cancel", seconds=60)
    pump_until(manager, lambda: manager.worker_pid() is not None and stuck.state == "running")
    time.sleep(0.3)
    manager.cancel(stuck.id)
    pump_until(manager, lambda: stuck.state != "running", timeout=10)
    assert stuck.state == "cancelled"
    assert 3.0 <= stuck.cancel_latency_s < 5.0


def test_submit_checks_kind_request_and_session() -> None:
    manager = JobManager(OPTIONS, Recorder())
    with pytest.raises(SidecarError) as unknown:
        manager.submit("no.such.kind", None, tj.NoFields())
    assert unknown.value.code == "unknown_job_kind"
    with pytest.raises(ProtocolError, match="steps"):  # the record checks its own fields
        tj.TestCount(session_id="s1", steps=-1)
    with pytest.raises(SidecarError) as untyped:
        manager.submit("test.count", None, {"steps": 1})
    assert untyped.value.code == "bad_request" and "TestCount" in untyped.value.message
    with pytest.raises(SidecarError) as other_kind:
        manager.submit("test.count", None, tj.TestSleep())
    assert other_kind.value.code == "bad_request" and "TestSleep" in other_kind.value.message
    register_job_kind(JobKind("test.unfrozen", lambda ctx: {}, Recorder, needs_session=False))
    with pytest.raises(SidecarError, match="frozen dataclass"):
        manager.submit("test.unfrozen", None, Recorder())
    register_job_kind(JobKind("test.needs_session", lambda ctx: {}, tj.NoFields))
    with pytest.raises(SidecarError) as no_session:
        manager.submit("test.needs_session", None, tj.NoFields())
    assert no_session.value.code == "bad_request" and "session" in no_session.value.message
    assert manager.queued() == []


def test_out_of_memory_fails_the_job_and_replaces_the_worker(manager) -> None:
    before = submit(manager, "test.count", steps=1)
    oom = submit(manager, "test.oom")
    after = submit(manager, "test.count", steps=1)
    pump_until(manager, lambda: after.state in ("finished", "failed"))
    assert oom.state == "failed" and oom.reason == "out_of_memory"
    assert "Tried to allocate" in oom.error
    assert after.state == "finished"
    assert after.result["worker_pid"] != before.result["worker_pid"]  # memory given back


def test_a_job_queued_after_a_turn_builds_on_the_turn_it_made(manager) -> None:
    first = submit(manager, "test.turn", name="t1", delay_s=0.3)
    second = submit(manager, "test.turn", name="t2", after_job=first.id)
    third = submit(manager, "test.turn", name="t3", after_job=second.id)
    pump_until(manager, lambda: third.state == "finished")
    assert first.result["parent"] is None  # the head, as asked
    assert second.result["parent"] == "t1" and third.result["parent"] == "t2"  # a chain
    # the worker got the resolved record: the parent set, the job to wait for gone
    assert second.request == tj.TestTurn(name="t2", parent_turn="t1")
    assert second.result["after_job"] is None

    failing = submit(manager, "test.raise")
    orphan = submit(manager, "test.turn", name="t4", after_job=failing.id)
    pump_until(manager, lambda: orphan.state in ("finished", "failed"))
    assert orphan.state == "failed" and failing.id in orphan.error
    with pytest.raises(SidecarError, match="nothing to build on"):
        submit(manager, "test.turn", name="t5", after_job=failing.id)
    with pytest.raises(SidecarError, match="no job"):
        submit(manager, "test.turn", name="t6", after_job="missing")


def test_a_protocol_request_record_round_trips_the_worker_pipe(manager) -> None:
    c2w = np.eye(4)
    c2w[:3, 3] = (0.125, -2.5, 3.0)
    camera = m.Camera(c2w=c2w, fx=500.5, fy=501.25, cx=320.0, cy=240.0, width=640,
                      height=480, name="frame_00001.png")
    sent = m.JobRunTurn(session_id="s1", instruction="make it snow, gently",
                        edit_queries=("hat, brim",), steps=12, preview_camera=camera)
    job = submit(manager, "test.echo_turn", **{f: getattr(sent, f) for f in _field_names(sent)})
    pump_until(manager, lambda: job.state in ("finished", "failed"))
    assert job.state == "finished", job.error
    got = job.result["request"]  # pickled to the worker and back again
    assert job.result["type"] == "JobRunTurn" and isinstance(got, m.JobRunTurn)
    for name in _field_names(sent):
        if name != "preview_camera":
            assert getattr(got, name) == getattr(sent, name), name
    assert got.edit_queries == ("hat, brim",) and got.mode is None  # unset stays unset
    back = got.preview_camera
    assert isinstance(back, m.Camera) and back.name == camera.name
    assert np.array_equal(back.c2w, camera.c2w) and back.c2w.dtype == np.float64
    assert (back.fx, back.fy, back.cx, back.cy, back.width, back.height) == (
        500.5, 501.25, 320.0, 240.0, 640, 480)


def test_pipe_records_are_frozen_and_pickle_unchanged() -> None:
    run = pipe.RunJob("j1", "test.turn", "/tmp/s1", tj.TestTurn(name="t", parent_turn="base"))
    assert pickle.loads(pickle.dumps(run)) == run
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.job_id = "j2"  # type: ignore[misc]
    raised = pipe.JobRaised("j1", "exception", "ValueError: x", "Traceback ...")
    assert pickle.loads(pickle.dumps(raised)) == raised


def _field_names(record: object) -> list[str]:
    return [f.name for f in dataclasses.fields(record)]  # type: ignore[arg-type]
