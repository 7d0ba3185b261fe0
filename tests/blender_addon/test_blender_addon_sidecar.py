"""The extension in a real headless Blender against a real sidecar subprocess.

The add-on starts the sidecar itself (its "Start Local Sidecar" operator, tiny models, CPU),
connects when the connection file appears, and drives everything through its operators and
its poll step, as a user would. Editing phases need edit3d's Workspace; without it they are
skipped, and say so.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from blender_harness import installed_home, run_bpy

pytestmark = pytest.mark.blender

HAS_WORKSPACE = importlib.util.find_spec("edit3d.workspace") is not None
NUM_VIEWS, RESOLUTION = 24, 32
needs_workspace = pytest.mark.skipif(
    not HAS_WORKSPACE, reason="edit3d.workspace is not available: session phases cannot run"
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    from edit3d.scene.sample import make_sample_scene

    return make_sample_scene(
        tmp_path_factory.mktemp("sample") / "scene", num_views=NUM_VIEWS, resolution=RESOLUTION
    )


@pytest.fixture(scope="module")
def session_run(sample, tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = installed_home(tmp_path_factory.getbasetemp() / "blender-sidecar")
    args = {
        "python": sys.executable,
        "workdir": str(tmp_path_factory.mktemp("sidecar-work")),
        "dataset": str(sample.root),
        "request_timeout_s": 5.0,
        "heartbeat_interval_s": 0.5,
        "lost_after_s": 3.0,
        "poll_interval_s": 0.05,
        "with_workspace": HAS_WORKSPACE,
        "base_steps": 30,
        "turn_steps": 20,
        "long_turn_steps": 2000,
        "render_view": 0,
    }
    run = run_bpy("sidecar_session", home, args, timeout_s=900)
    result = run.result
    result["_seconds"] = run.seconds
    result["workdir"] = args["workdir"]
    summary_path = Path(args["workdir"]).parent / "blender-sidecar-result.json"
    summary_path.write_text(json.dumps(result))
    print(f"bpy session took {run.seconds:.1f} s; full result in {summary_path}")
    return result


def _no_failures(result: dict) -> None:
    assert "exception" not in result, result["exception"]
    assert result["timeouts"] == [], result["timeouts"]


def test_connects_and_shows_the_handshake(session_run: dict) -> None:
    _no_failures(session_run)
    connect = session_run["connect"]
    assert connect["operator"]["result"] == ["FINISHED"]
    assert connect["seconds"] is not None
    assert connect["device"].startswith("cpu")
    assert connect["server_version"]
    assert "job.train_base" in connect["capabilities"]
    assert session_run["longest_tick"] < 0.5, "a poll tick must never stall Blender"
    assert session_run["timer_registered_after_disable"] is False


def test_stopping_the_local_sidecar_is_a_disconnect_not_a_loss(session_run: dict) -> None:
    stopped = session_run["after_stop"]
    assert stopped["state"] == "DISCONNECTED", stopped
    assert "stopped" in stopped["message"] and stopped["errors"] == []


@needs_workspace
def test_dataset_cameras_imported_from_the_session_match_transforms(session_run, sample):
    transforms = json.loads((Path(sample.root) / "transforms.json").read_text())
    frames = {f["file_path"]: f for f in transforms["frames"]}
    assert sorted(session_run["session"]["views"]) == sorted(frames)
    cameras = session_run["cameras"]
    assert len(cameras) == NUM_VIEWS
    for cam in cameras:
        frame = frames[cam["view_name"]]
        fl_x = frame.get("fl_x", transforms.get("fl_x"))
        width = frame.get("w", transforms.get("w"))
        np.testing.assert_allclose(cam["matrix_world"], frame["transform_matrix"], atol=2e-6)
        assert cam["lens"] == pytest.approx(fl_x * cam["sensor_width"] / width, rel=1e-6)


def test_wrong_key_is_reported_and_the_right_one_reconnects(session_run: dict) -> None:
    wrong = session_run["wrong_key"]
    # the handshake gives up after 2 s (a stale or wrong connection is found fast), not
    # after the 5 s request timeout
    assert wrong["elapsed"] is not None and 1.5 < wrong["elapsed"] < 3.5
    assert len(wrong["errors"]) == 1
    assert "No answer from the sidecar" in wrong["errors"][0]
    assert "key" in wrong["errors"][0]
    assert wrong["reconnected_s"] is not None


def test_local_dataset_uploads_into_a_new_session(session_run, sample) -> None:
    upload = session_run["upload"]
    assert upload["operator"]["result"] == ["FINISHED"]
    assert upload["final"]["job_state"] == "FINISHED", upload["final"]
    name = Path(sample.root).name
    assert upload["uploaded_dataset"] == name
    fractions = [s["progress"] for s in upload["samples"] if s["job_kind"] == "upload"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    landed = Path(session_run["workdir"]) / "sessions" / upload["session_id"] / "uploads" / name
    local = sorted(p.relative_to(sample.root) for p in Path(sample.root).rglob("*") if p.is_file())
    remote = sorted(p.relative_to(landed) for p in landed.rglob("*") if p.is_file())
    assert remote == local
    for rel in local:
        assert (landed / rel).read_bytes() == (Path(sample.root) / rel).read_bytes()


def test_killed_idle_sidecar_shows_lost_and_a_restarted_one_is_found(session_run) -> None:
    kill = session_run["idle_kill"]
    # heartbeat every 0.5 s, lost after 3 s of silence
    assert kill["lost_s"] is not None and 2.5 <= kill["lost_s"] <= 5.0
    assert kill["reconnected_s"] is not None
    # A restarted sidecar writes a new key (and, on tcp, a new port): the file was re-read.
    assert kill["new_key"] is not None and kill["new_key"] != kill["old_key"]
    assert kill["session_after"] == session_run["upload"]["session_id"]
    assert any(level == "ERROR" and "Lost the sidecar" in m for level, m in session_run["reports"])


def test_sessions_are_listed_and_one_opens_from_the_list(session_run: dict) -> None:
    sessions = session_run["sessions"]
    listed = {sid: (label, turns) for sid, label, turns in sessions["listed"]}
    uploaded = session_run["upload"]["session_id"]
    assert listed[uploaded][0] == "uploaded"
    if HAS_WORKSPACE:
        sample_id = session_run["session"]["session_id"]
        assert listed[sample_id][0] == "sample" and listed[sample_id][1] >= 2
    assert sessions["opened"] == uploaded
    assert sessions["turns"] == 0


def _progress_samples(job: dict) -> list[dict]:
    return [s for s in job["samples"] if s["job_state"] == "RUNNING" and s["total"] > 0]


@needs_workspace
def test_train_base_progress_drives_the_panel(session_run: dict) -> None:
    _no_failures(session_run)
    base = session_run["base"]
    assert base["final"]["job_state"] == "FINISHED", base["final"]
    running = _progress_samples(base)
    assert running, "progress events must reach the panel's properties"
    steps = [s["step"] for s in running]
    assert steps == sorted(steps)
    assert all(s["progress"] == pytest.approx(s["step"] / s["total"], abs=1e-3) for s in running)
    assert [t["kind"] for t in session_run["turns_after_base"]] == ["base"]


@needs_workspace
def test_render_of_active_camera_matches_the_sidecars_render_of_that_pose(session_run, sample):
    render = session_run["render"]
    assert render["job"]["job_state"] == "FINISHED"
    sent, direct = render["sent_camera"], render["direct_camera"]
    np.testing.assert_allclose(sent["c2w"], direct["c2w"], atol=2e-6)
    np.testing.assert_allclose(sent["k"], direct["k"], rtol=1e-5)
    via_blender = np.asarray(render["blender_image"])
    direct_image = np.asarray(render["direct_image"])
    assert via_blender.shape == direct_image.shape == (RESOLUTION, RESOLUTION, 3)
    assert np.abs(via_blender - direct_image).max() <= 1.5 / 255
    # a dataset camera's render resembles its own training image more than others
    own = np.asarray(sample.image(render["view"]), dtype=np.float32)
    others = [np.asarray(sample.image(v.name), dtype=np.float32) for v in sample.views[6:18:3]]
    mse_own = float(np.mean((via_blender - own) ** 2))
    assert all(mse_own < float(np.mean((via_blender - o) ** 2)) for o in others), mse_own


@needs_workspace
def test_live_preview_rerenders_the_moved_camera_quietly(session_run: dict) -> None:
    live = session_run["live"]
    assert live["seconds"] is not None
    assert live["sent_view"] == live["camera_view"]
    assert live["image_changed"] > 0.05  # another viewpoint, another picture
    assert live["panel_job_unchanged"]  # silent: the panel keeps showing the user's job


@needs_workspace
def test_mask_preview_for_the_active_camera_fills_caption_and_images(session_run) -> None:
    assert session_run["masks"]["final"]["job_state"] == "FINISHED", session_run["masks"]
    images = session_run["mask_images"]
    assert images["caption_field"] == images["caption"]  # auto caption fills the field
    assert images["mask"] == [RESOLUTION, RESOLUTION]
    assert images["heatmap"] == [RESOLUTION, RESOLUTION]


@needs_workspace
def test_turn_runs_with_progress_and_becomes_head(session_run: dict) -> None:
    turn = session_run["turn"]
    assert turn["final"]["job_state"] == "FINISHED", turn["final"]
    assert _progress_samples(turn)
    edits = [t for t in session_run["turns_after_turn"] if t["kind"] == "edit"]
    assert len(edits) == 1 and edits[0]["instruction"] == "make it red"
    assert session_run["head_after_turn"] == edits[0]["turn_id"]


@needs_workspace
def test_cancel_stops_a_running_turn_promptly(session_run: dict) -> None:
    cancel = session_run["cancel"]
    assert cancel["final"]["job_state"] == "CANCELLED"
    assert cancel["latency_s"] < 30.0


@needs_workspace
def test_exported_point_cloud_lands_in_the_scene_in_world_frame(session_run, sample) -> None:
    export = session_run["export"]
    assert export["job"]["job_state"] == "FINISHED"
    assert export["objects"] == 1
    assert export["count"] == export["sent_count"] > 0
    assert export["attr"] == ["POINT", "FLOAT_COLOR"]
    assert export["max_position_err"] < 1e-5
    assert export["max_color_err"] < 1e-5
    # world frame: the points sit around the sample scene (centred at SCENE_ORIGIN, not 0)
    points = np.asarray(export["points_sample"])
    centre = np.median(points, axis=0)
    cams = np.array([v.c2w[:3, 3] for v in sample.views])
    assert np.linalg.norm(centre[:2] - cams[:, :2].mean(axis=0)) < 1.5
    assert np.linalg.norm(centre[:2]) > 1.0  # not at the origin of a normalised frame


@needs_workspace
def test_checkout_of_an_earlier_turn_moves_the_head(session_run: dict) -> None:
    checkout = session_run["checkout"]
    assert checkout["head"] == checkout["base"]


@needs_workspace
def test_sidecar_killed_mid_job_shows_lost_and_recovers(session_run: dict) -> None:
    kill = session_run["kill"]
    assert kill["running_s"] is not None
    # heartbeat every 0.5 s, lost after 3 s of silence (progress events count as contact)
    assert kill["lost_after_kill_s"] is not None and 2.5 <= kill["lost_after_kill_s"] <= 5.0
    assert any("Lost the sidecar" in e for e in kill["errors_after_kill"])
    assert kill["reconnected_s"] is not None
    assert kill["job_after"]["connection"] == "CONNECTED"
    assert kill["job_after"]["job_state"] == "FAILED"
    statuses = {t["status"] for t in kill["turns_after_restart"]}
    assert "interrupted" in statuses
    assert all(t["status"] != "interrupted" for t in kill["turns_after_discard"])
    finished = [t for t in kill["turns_after_discard"] if t["status"] == "finished"]
    assert {t["kind"] for t in finished} == {"base", "edit"}
