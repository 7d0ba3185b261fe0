"""Free GPU memory in heartbeats: the worker's reporter, the queue's bookkeeping and the
reply (the GPU itself is faked: these machines have none; on a CPU the field stays None)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from sidecar import handlers
from sidecar.jobs import JobLimits, JobManager
from sidecar.pipe import JobPreviewed, JobProgressed, MemoryReading, WorkerReady
from sidecar.worker import MemoryReporter, WorkerOptions, gpu_memory_free

KIND_NAMES = {JobProgressed: "progress", JobPreviewed: "preview", MemoryReading: "device"}


def _names(sent: list) -> list[str]:
    return [KIND_NAMES[type(message)] for message in sent]


def test_reporter_adds_memory_to_progress_at_most_every_interval() -> None:
    sent: list = []
    readings = iter([7_000, 6_000, 5_000])
    reporter = MemoryReporter(sent.append, "cuda:0", interval_s=0.05,
                              probe=lambda device: next(readings))
    reporter.send(JobProgressed("job", {"step": 1}))
    reporter.send(JobPreviewed("job", {}))
    assert _names(sent) == ["progress", "preview"]  # within the first interval
    time.sleep(0.06)
    reporter.send(JobPreviewed("job", {}))  # only progress reports carry a reading
    reporter.send(JobProgressed("job", {"step": 2}))
    reporter.send(JobProgressed("job", {"step": 3}))
    assert _names(sent) == ["progress", "preview", "preview", "progress", "device", "progress"]
    assert sent[4] == MemoryReading(7_000)
    reporter.report()  # at the end of a job
    assert sent[-1] == MemoryReading(6_000)


def test_reporter_is_silent_on_cpu() -> None:
    sent: list = []
    reporter = MemoryReporter(sent.append, "cpu", interval_s=0.0, probe=lambda device: 1)
    reporter.send(JobProgressed("job", {"step": 1}))
    reporter.report()
    assert _names(sent) == ["progress"]
    assert gpu_memory_free("cpu") is None


def test_queue_keeps_the_latest_reading_and_heartbeat_shows_it() -> None:
    manager = JobManager(WorkerOptions(device="cpu"), lambda *a: None, JobLimits())
    try:
        manager._handle_message(WorkerReady(1, {"device": "cuda", "gpu_memory_free": 9}))
        manager._handle_message(MemoryReading(4))
        assert manager.device_info == {"device": "cuda", "gpu_memory_free": 4}
        sidecar = SimpleNamespace(jobs=manager)
        reply = handlers.heartbeat(sidecar, None)  # type: ignore[arg-type]
        assert reply.gpu_memory_free == 4 and reply.busy is False
        manager.device_info = {"device": "cpu"}
        assert handlers.heartbeat(sidecar, None).gpu_memory_free is None  # type: ignore[arg-type]
    finally:
        manager.shutdown(timeout_s=5.0)
