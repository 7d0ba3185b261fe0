"""Each job kind's request maps onto the method's configuration passing only what the request
set; turn summaries keep query lists."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from edit3d.editing.turns import TurnSpec
from edit3d.export.mesh import MeshConfig
from edit3d.export.pointcloud import PointCloudConfig
from edit3d.refine import RefineConfig
from protocol import messages as m
from sidecar import edit3d_jobs, workspaces


def test_a_turn_with_only_an_instruction_is_the_method_defaults() -> None:
    request = m.JobRunTurn(session_id="s1", instruction="paint it red")
    spec = edit3d_jobs.turn_spec(request)
    assert spec == TurnSpec(instruction="paint it red")
    assert spec.steps is None  # the field preset's turn_steps decides


def test_set_fields_reach_the_spec_and_queries_stay_whole() -> None:
    request = m.JobRunTurn(session_id="s1", instruction="x", steps=7, lr=0.01, seed=3,
                           edit_rate=4, edit_count=2, mode="in2n", editor="ip2p-tiny",
                           update="rounds", edit_queries=("hat, brim", "scarf"),
                           keep_queries=("face",))
    spec = edit3d_jobs.turn_spec(request)
    assert spec == TurnSpec(instruction="x", steps=7, lr=0.01, seed=3, edit_rate=4,
                            edit_count=2, mode="in2n", editor="ip2p-tiny", update="rounds",
                            edit_queries=("hat, brim", "scarf"), keep_queries=("face",))


def test_every_turn_spec_field_but_the_instruction_is_optional_in_the_request() -> None:
    fields = m.JobRunTurn.__dataclass_fields__
    for name in edit3d_jobs.TURN_SPEC_FIELDS:
        assert name in fields, name
        if name not in ("instruction", "edit_queries", "keep_queries"):
            assert fields[name].default is None, f"JobRunTurn.{name} restates a default"
    assert "preset" not in fields  # was never read


def test_every_turn_setting_travels_on_the_wire() -> None:
    # editor_settings travel as their own record; segmentation is what the sidecar used
    by_wire = {*edit3d_jobs.TURN_SPEC_FIELDS, "editor_settings", "segmentation"}
    assert by_wire == {f.name for f in dataclasses.fields(TurnSpec)}


def test_refine_and_export_leave_unset_fields_to_the_method() -> None:
    assert edit3d_jobs.refine_config(m.JobRefine(session_id="s1")) == RefineConfig()
    set_ = edit3d_jobs.refine_config(m.JobRefine(session_id="s1", steps=9, scale=2, faces=False))
    assert set_ == RefineConfig(steps=9, scale=2, faces=False)
    classical = edit3d_jobs.refine_config(m.JobRefine(session_id="s1", upscaler="lanczos"))
    assert classical == RefineConfig(upscaler="lanczos")
    assert edit3d_jobs.point_cloud_config(m.JobExport(session_id="s1")) == PointCloudConfig()
    budget = edit3d_jobs.point_cloud_config(m.JobExport(session_id="s1", budget=1234))
    assert budget == PointCloudConfig(num_points=1234)
    fewer = m.JobExport(session_id="s1", kind="mesh", max_views=5)
    assert edit3d_jobs.point_cloud_config(fewer) == PointCloudConfig(max_views=5)
    assert edit3d_jobs.mesh_config(fewer) == MeshConfig(max_views=5)
    assert edit3d_jobs.mesh_config(m.JobExport(session_id="s1")) == MeshConfig()


def test_turn_summaries_carry_queries_as_lists_and_only_scalars_as_params(tmp_path) -> None:
    record = SimpleNamespace(
        id="turn-0001", parent="base", kind="edit", status="finished", created=1.0,
        finished=2.0, steps=5,
        spec={"instruction": "x", "edit_queries": ["hat, brim", "scarf"], "keep_queries": [],
              "caption": "a man", "steps": None, "edit_rate": 10},
    )  # fmt: skip
    summary = workspaces._turn_summary(tmp_path, record)
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
    provider, made_by = edit3d_jobs._mask_provider(allowed, spec)
    assert isinstance(provider, GroundTruthMaskProvider) and made_by == f"provider:{stand_in}"
    assert provider.masks_dir == scene.root / "masks"
    with pytest.raises(SidecarError, match="not allowed"):
        edit3d_jobs._mask_provider(_turn_context(tmp_path, scene.root, ()), spec)
