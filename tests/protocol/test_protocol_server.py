"""ServerEndpoint delivery reporting and the per-session EventLog ring."""

from __future__ import annotations

import numpy as np
import pytest

from protocol import EventLog, JobPreview, JobProgress, Ok, ServerEndpoint

KEY = b"e" * 32


def test_reply_to_a_vanished_peer_reports_failure() -> None:
    with ServerEndpoint("tcp://127.0.0.1:0", KEY) as endpoint:
        assert endpoint.endpoint.startswith("tcp://127.0.0.1:")
        assert endpoint.reply(b"nobody", Ok(), parent_id=None) is False
        assert endpoint.push_event([b"a", b"b"], JobProgress(job_id="j", step=1),
                                   session="s", seq=1) == []
        assert endpoint.stats["undeliverable"] == 3


def test_event_log_numbers_from_one_and_replays_in_order() -> None:
    log = EventLog(max_events=3)
    seqs = [log.append(JobProgress(job_id="j", step=i), parent_id="p" * 32) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert [(s, m.step) for s, m, _ in log.since(2)] == [(3, 2), (4, 3), (5, 4)]
    assert log.since(5) == [] and log.since(9) == []
    assert log.since(1) is None  # event 2 was forgotten: the caller must send a snapshot


def test_event_log_is_bounded_by_bytes() -> None:
    log = EventLog(max_events=100, max_bytes=3 << 20)
    for step in range(5):
        log.append(JobPreview(job_id="j", step=step, image=np.zeros((512, 512, 4), np.uint8)))
    kept = log.since(0) or log.since(5 - len(log._ring))
    assert kept is not None and len(kept) == 2  # 2 x 1 MiB frames fit under 3 MiB
    assert log.since(0) is None


def test_event_log_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="max_events"):
        EventLog(max_events=0)
