"""JobManager with a real worker process: lifecycle, cancel, failures, crashes."""

from __future__ import annotations

import time

import pytest
import sidecar_test_jobs  # noqa: F401  (registers the test kinds in this process)

from sidecar.errors import SidecarError
from sidecar.jobs import Job, JobLimits, JobManager
from sidecar.kinds import JobKind, register_job_kind
from sidecar.worker import WorkerOptions

OPTIONS = WorkerOptions(device="cpu", profile="tiny", job_modules=("sidecar_test_jobs",))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def __call__(self, job: Job, kind: str, data: dict) -> None:
        self.events.append((job.id, kind, data))

    def kinds(self, job_id: str) -> list[str]:
        return [kind for jid, kind, _ in self.events if jid == job_id]


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
    first = manager.submit("test.count", None, {"steps": 3, "delay_s": 0.05})
    second = manager.submit("test.count", None, {"steps": 2, "delay_s": 0.0, "preview": True})
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


def test_cancel_running_is_prompt_and_queued_is_immediate(manager) -> None:
    running = manager.submit("test.count", None, {"steps": 10_000, "delay_s": 0.01})
    waiting = manager.submit("test.count", None, {"steps": 1})
    pump_until(manager, lambda: running.progress is not None)
    manager.cancel(waiting.id)
    assert waiting.state == "cancelled"
    manager.cancel(running.id)
    pump_until(manager, lambda: running.state != "running")
    assert running.state == "cancelled"
    assert running.cancel_latency_s is not None and running.cancel_latency_s < 0.5
    assert running.progress["step"] < 10_000


def test_exception_fails_with_traceback_and_worker_survives(manager) -> None:
    bad = manager.submit("test.raise", None, {})
    good = manager.submit("test.count", None, {"steps": 1})
    pump_until(manager, lambda: good.state in ("finished", "failed"))
    assert bad.state == "failed" and bad.reason == "exception"
    assert "deliberate failure in test.raise" in bad.error
    assert "Traceback" in bad.traceback and "raise_error" in bad.traceback
    assert good.state == "finished"
    assert manager.worker_restarts == 0


@pytest.mark.parametrize(("kind", "signal_name"), [("test.abort", "SIGABRT"),
                                                    ("test.segfault", "SIGSEGV")])
def test_worker_crash_fails_only_that_job(manager, kind: str, signal_name: str) -> None:
    crash = manager.submit(kind, None, {})
    after = manager.submit("test.count", None, {"steps": 2})
    pump_until(manager, lambda: after.state in ("finished", "failed"))
    assert crash.state == "failed" and crash.reason == "worker_crashed"
    assert signal_name in crash.error
    assert after.state == "finished"
    assert manager.worker_restarts == 1


def test_job_that_ignores_cancel_is_killed_after_the_grace(manager) -> None:
    stuck = manager.submit("test.ignore_cancel", None, {"seconds": 60})
    pump_until(manager, lambda: manager.worker_pid() is not None and stuck.state == "running")
    time.sleep(0.3)
    manager.cancel(stuck.id)
    pump_until(manager, lambda: stuck.state != "running", timeout=10)
    assert stuck.state == "cancelled"
    assert 3.0 <= stuck.cancel_latency_s < 5.0


def test_submit_checks_kind_params_and_session() -> None:
    manager = JobManager(OPTIONS, Recorder())
    with pytest.raises(SidecarError) as unknown:
        manager.submit("no.such.kind", None, {})
    assert unknown.value.code == "unknown_job_kind"
    with pytest.raises(SidecarError) as bad:
        manager.submit("test.count", None, {"steps": -1})
    assert bad.value.code == "bad_request" and "steps" in bad.value.message
    register_job_kind(JobKind("test.needs_session", lambda ctx: {}, needs_session=True))
    with pytest.raises(SidecarError) as no_session:
        manager.submit("test.needs_session", None, {})
    assert no_session.value.code == "bad_request" and "session" in no_session.value.message
    assert manager.queued() == []


def test_out_of_memory_fails_the_job_and_replaces_the_worker(manager) -> None:
    before = manager.submit("test.count", None, {"steps": 1})
    oom = manager.submit("test.oom", None, {})
    after = manager.submit("test.count", None, {"steps": 1})
    pump_until(manager, lambda: after.state in ("finished", "failed"))
    assert oom.state == "failed" and oom.reason == "out_of_memory"
    assert "Tried to allocate" in oom.error
    assert after.state == "finished"
    assert after.result["worker_pid"] != before.result["worker_pid"]  # memory given back


def test_a_job_queued_after_a_turn_builds_on_the_turn_it_made(manager) -> None:
    first = manager.submit("test.turn", None, {"name": "t1", "delay_s": 0.3})
    second = manager.submit("test.turn", None, {"name": "t2", "after_job": first.id})
    third = manager.submit("test.turn", None, {"name": "t3", "after_job": second.id})
    pump_until(manager, lambda: third.state == "finished")
    assert first.result["parent"] is None  # the head, as asked
    assert second.result["parent"] == "t1" and third.result["parent"] == "t2"  # a chain

    failing = manager.submit("test.raise", None, {})
    orphan = manager.submit("test.turn", None, {"name": "t4", "after_job": failing.id})
    pump_until(manager, lambda: orphan.state in ("finished", "failed"))
    assert orphan.state == "failed" and failing.id in orphan.error
    with pytest.raises(SidecarError, match="nothing to build on"):
        manager.submit("test.turn", None, {"name": "t5", "after_job": failing.id})
    with pytest.raises(SidecarError, match="no job"):
        manager.submit("test.turn", None, {"name": "t6", "after_job": "missing"})
