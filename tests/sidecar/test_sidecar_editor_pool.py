"""A session's editor pool: its settings on session.create, the actors in job progress, and a
real sidecar running a turn on a pool of one CPU actor (slow: Ray starts in the worker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sidecar_harness import of_type, start_sidecar, wait_for_events

from protocol import messages as m
from protocol.codec import Codec
from protocol.errors import ProtocolError
from sidecar.server import _progress_message

KEY = b"k" * 32


def test_staleness_without_editors_is_refused_by_the_schema() -> None:
    m.SessionCreate(name="s", editors=2, staleness=0).check()
    with pytest.raises(ProtocolError, match="staleness applies to an editor pool"):
        m.SessionCreate(name="s", staleness=1).check()
    with pytest.raises(ProtocolError):
        m.SessionCreate(name="s", editors=65).validate()


def test_the_pools_actors_travel_in_job_progress() -> None:
    data = {
        "phase": "turn", "step": 8, "total": 20, "loss": 0.1, "eta_s": 3.0, "message": "",
        "extra": {"edited_view": "a.png", "edits": 3, "editors": [
            {"editor": "editor-0", "device": "cpu on n1", "edits": 2, "s_per_edit": 0.5,
             "alive": True, "busy": True, "pid": 11},
            {"editor": "editor-1", "device": "cpu on n1", "edits": 1, "s_per_edit": None,
             "alive": False, "busy": False, "pid": 12},
        ]},
    }  # fmt: skip
    progress = _progress_message("0123456789ab", data)
    assert [e.editor for e in progress.editors] == ["editor-0", "editor-1"]
    assert progress.editors[1].alive is False and progress.editors[1].s_per_edit is None
    codec = Codec(KEY)
    decoded = codec.unpack([bytes(memoryview(f)) for f in codec.pack(progress)]).message
    assert decoded == progress
    without = _progress_message("0123456789ab", {**data, "extra": {}})
    assert without.editors == ()


@pytest.mark.slow
def test_a_sessions_turn_runs_on_its_editor_pool(tmp_path: Path) -> None:
    from edit3d.field.testing import make_tiny_scene

    pytest.importorskip("ray")
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    work = tmp_path / "work"
    sidecar = start_sidecar(work, "--data-root", str(scene.root), preload=True)
    client = sidecar.client()
    created = client.request(
        m.SessionCreate(
            name="pool", dataset_path=str(scene.root), preset="tiny", editors=1, staleness=0
        )
    )
    sid = created.session_id
    client.follow(sid, created.last_seq)
    wait_for_events(client, lambda e: e.header.type == "job.finished")
    meta = json.loads((work / "sessions" / sid / "session.json").read_text())
    assert meta["editor_pool"] == {"editors": 1, "staleness": 0}
    base = client.request(m.JobTrainBase(session_id=sid, steps=10))
    wait_for_events(client, lambda e: e.header.type == "job.finished"
                    and e.message.job_id == base.job_id, timeout=300)  # fmt: skip
    settings = m.EditorSettings(diffusion_steps=2)
    turn = client.request(m.JobRunTurn(session_id=sid, instruction="paint it red", steps=10,
                                       edit_rate=2, editor_settings=settings))  # fmt: skip
    seen = wait_for_events(
        client,
        lambda e: (
            e.header.type in ("job.finished", "job.failed") and e.message.job_id == turn.job_id
        ),
        timeout=600,
    )
    assert of_type(seen, "job.finished", turn.job_id), of_type(seen, "job.failed", turn.job_id)
    progress = [p for p in of_type(seen, "job.progress", turn.job_id) if p.editors]
    last = progress[-1].editors
    assert len(last) == 1 and last[0].device.startswith("cpu") and last[0].alive
    assert last[0].edits == 5 and last[0].s_per_edit is not None
