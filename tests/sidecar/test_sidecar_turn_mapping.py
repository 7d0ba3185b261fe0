"""job.run_turn → TurnSpec passes only what the request set; turn summaries keep query lists."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from protocol import messages as m
from sidecar import edit3d_jobs, workspaces


def _params(request: m.Message) -> dict:
    """The job parameters the server queues for a request (its fields but the session)."""
    params = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    params.pop("session_id")
    return params


def test_unset_steps_leave_the_turn_length_to_the_preset() -> None:
    request = m.JobRunTurn(session_id="s1", instruction="paint it red")
    spec = edit3d_jobs._turn_spec(SimpleNamespace(params=_params(request)))
    assert spec.steps is None  # the field preset's turn_steps decides
    assert spec.lr == 0.0025 and spec.edit_rate == 10  # TurnSpec's own defaults


def test_set_fields_reach_the_spec_and_queries_stay_whole() -> None:
    request = m.JobRunTurn(session_id="s1", instruction="x", steps=7, lr=0.01, seed=3,
                           edit_queries=("hat, brim", "scarf"), keep_queries=("face",))
    spec = edit3d_jobs._turn_spec(SimpleNamespace(params=_params(request)))
    assert (spec.steps, spec.lr, spec.seed) == (7, 0.01, 3)
    assert spec.edit_queries == ("hat, brim", "scarf") and spec.keep_queries == ("face",)


def test_turn_summaries_carry_queries_as_lists_and_only_scalars_as_params() -> None:
    record = SimpleNamespace(
        id="turn-0001", parent="base", kind="edit", status="finished", created=1.0,
        finished=2.0, steps=5,
        spec={"instruction": "x", "edit_queries": ["hat, brim", "scarf"], "keep_queries": [],
              "caption": "a man", "steps": None, "edit_rate": 10},
    )  # fmt: skip
    summary = workspaces._turn_summary(record)
    assert summary.edit_queries == ("hat, brim", "scarf") and summary.keep_queries == ()
    assert "edit_queries" not in summary.params and summary.params["caption"] == "a man"
    info = m.TurnInfo(turn_id=summary.turn_id, kind="edit", status="finished", created_ts=1.0,
                      edit_queries=summary.edit_queries, params=summary.params)
    assert info.edit_queries == ("hat, brim", "scarf")
