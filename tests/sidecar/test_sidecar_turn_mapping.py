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


def _turn_context(tmp_path, dataset, allowed: tuple[str, ...]) -> SimpleNamespace:
    import json

    (tmp_path / "session.json").write_text(
        json.dumps({"source": {"kind": "dataset", "path": str(dataset)}}))
    return SimpleNamespace(session_dir=tmp_path, cache={}, allowed_editors=allowed,
                           device="cpu", profile="tiny")  # fmt: skip


def test_only_an_operator_allowed_editor_brings_its_own_masks(tmp_path) -> None:
    import pytest

    from edit3d.scene.sample import make_sample_scene
    from edit3d.segmentation.ground_truth import GroundTruthMaskProvider
    from sidecar.errors import SidecarError

    scene = make_sample_scene(tmp_path / "scene", num_views=24, resolution=32)
    stand_in = "edit3d.editing.standin:RecolourEditor"
    spec = SimpleNamespace(editor=stand_in, edit_queries=("shirt",), keep_queries=())
    allowed = _turn_context(tmp_path, scene.root, (stand_in,))
    provider = edit3d_jobs._mask_provider(allowed, spec)
    assert isinstance(provider, GroundTruthMaskProvider)
    assert provider.masks_dir == scene.root / "masks"
    with pytest.raises(SidecarError, match="not allowed"):
        edit3d_jobs._mask_provider(_turn_context(tmp_path, scene.root, ()), spec)
