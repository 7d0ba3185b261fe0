"""What a Blender user sees and does, in a real headless Blender: presets and steps, visible
results, undo, and honest connection state (fake sidecars in the bpy process; no GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from blender_harness import installed_home, run_bpy

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_home(tmp_path_factory.mktemp("blender"))


def test_unset_steps_leave_the_length_to_the_preset_and_sessions_show_their_own(
    home: Path,
) -> None:
    result = run_bpy("preset_and_queries", home).result
    # default panel: no steps sent, so the session's preset decides (Small: 5,000 / 3,000)
    assert result["defaults"] == {"job.train_base": None, "job.run_turn": None}
    assert result["chosen"] == {"job.train_base": 123, "job.run_turn": 45}
    assert result["updates"] == [None, "rounds"]  # Default sends none: the method decides
    assert result["preset_after_open"] == "paper"  # the session's, not the panel's "small"
    # a query with a comma stays one query
    assert result["turn_queries"] == ["hat, brim; scarf", "face"]


def test_the_backend_is_chosen_for_a_new_session_and_shown_for_the_open_one(home: Path) -> None:
    result = run_bpy("backend_choice", home).result
    # Default sends nothing (edit3d decides); a chosen backend is sent; a run decides its own
    assert result["sent"] == [None, "splatfacto", None]
    shown = result["shown"]
    assert shown["DATASET/DEFAULT"]["session_backend"] == ""
    assert shown["DATASET/DEFAULT"]["open_label"].endswith(", default backend")
    assert shown["DATASET/splatfacto"]["session_backend"] == "splatfacto"
    assert shown["DATASET/splatfacto"]["open_label"].endswith(", splatfacto")
    assert shown["DATASET/splatfacto"]["backend_prop_drawn"] is True
    assert shown["NERFSTUDIO_RUN/nerfacto"]["backend_prop_drawn"] is False


def test_save_offers_a_nerfstudio_run_kept_on_the_sidecar(home: Path) -> None:
    result = run_bpy("save_nerfstudio_run", home).result
    assert result["sent"] == [["nerfstudio_run", False]]
    assert any("saved a nerfstudio run on the sidecar: exports/" in r for r in result["reports"])


def test_point_clouds_and_meshes_render_in_their_colours(home: Path, tmp_path: Path) -> None:
    result = run_bpy("visible_results", home, {"out_dir": str(tmp_path)}).result
    assert result["modifier"] == ["NODES", "Edit3D Points"]
    assert result["cloud_material"] == result["mesh_material"] == ["Edit3D Color"]
    # a 2x2 plate seen from 4 m with a 50 mm lens covers a good share of the frame
    for name, dominant in (("cloud", 0), ("plate", 1)):
        shown = result[name]
        assert shown["coverage"] > 0.1, (name, shown)
        rgb = shown["mean_rgb"]
        assert rgb[dominant] > 2 * max(c for i, c in enumerate(rgb) if i != dominant), (name, rgb)


def test_imports_are_undo_steps_and_discarding_asks_first(home: Path) -> None:
    result = run_bpy("undo_and_confirm", home).result
    for name, options in result["options"].items():
        assert options == ["REGISTER", "UNDO"], name
    assert result["confirm_result"] == ["RUNNING_MODAL"]
    assert len(result["confirm_asked"]) == 1 and "Discard" in result["confirm_asked"][0]["title"]
    # an object built by the poll step is one undo step: undo removes it, redo restores it
    assert (result["imported"], result["after_undo"], result["after_redo"]) == (True, False, True)
    assert "Edit3D mesh head: 1 triangles" in result["reports"]


def test_the_panel_tells_the_truth(home: Path, tmp_path: Path) -> None:
    result = run_bpy("honest_state", home, {"tmp": str(tmp_path)}).result
    # a session open: its name is shown, and the next session can still be named
    naming = result["naming"]
    assert naming["label"] == "garden" and naming["name_field"] == "next scene"
    assert naming["create_sent"] == ["next scene"]
    assert result["loss_during_render"] == 0.0  # the last turn's loss does not linger
    # disabled and enabled again while connected: disconnected, and Connect works
    assert result["connected_before"] == "CONNECTED"
    assert result["after_reenable"] == {
        "state": "DISCONNECTED", "connect_enabled": True, "create_enabled": False,
    }
    # the sidecar chooses CUDA only where torch finds it; a forced device is passed on
    assert result["device_default"] == "auto" and "--device" not in result["auto_command"]
    assert result["cpu_command"][-4:] == ["--device", "cpu", "--profile", "tiny"]
    errors = result["file_errors"]
    assert "is a folder" in errors["folder"]["error"] and "chmod" not in errors["folder"]["error"]
    assert "has no 'key' field" in errors["no_key"]["error"]
    assert "is stale" in errors["stale"]["error"] and errors["stale"]["s"] < 0.5
    assert all(e["result"] == ["CANCELLED"] for e in errors.values())
    assert result["runtime_on_scene"] == []  # nothing transient is saved with the .blend


def test_exports_download_in_checked_chunks_and_resume(home: Path, tmp_path: Path) -> None:
    result = run_bpy("download_export", home, {"folder": str(tmp_path / "saved")}).result
    assert result["no_export"]["result"] == ["CANCELLED"]
    fresh = result["fresh"]
    assert fresh["state"] == "FINISHED" and fresh["same_bytes"] and not fresh["part_left"]
    assert fresh["offsets"] == [0, 1000, 2000, 3000, 4000]  # 1000-byte chunks
    resumed = result["resumed"]
    assert resumed["state"] == "FINISHED" and resumed["same_bytes"]
    assert resumed["offsets"] == [2500, 3500]  # only what the .part file lacked
    corrupt = result["corrupt"]
    assert corrupt["state"] == "FAILED" and not corrupt["same_bytes"]
    assert not corrupt["part_left"]  # discarded, so the next Download starts afresh
    assert any("checksum" in e for e in result["errors"])


def test_every_job_is_listed_followed_and_cancellable(home: Path) -> None:
    result = run_bpy("job_list", home).result
    attached = result["attached"]
    # a base training started by another Blender: listed and followed on opening
    assert attached["rows"] == [["j0", "job.train_base", "running", 40]]
    assert attached["current"] == ["j0", "RUNNING", 40]
    assert attached["after_progress"] == [60, 30.0, pytest.approx(0.6)]
    # Run Turn while a turn job is running or queued: on top of it, and it says so
    assert all(r["result"] == ["FINISHED"] for r in result["turn_reports"])
    assert result["sent"] == [[None, "j0"], [None, "j1"]]  # a chain, not siblings
    assert result["cancel_first"] == ["j1"]  # cancel reaches the job asked for
    assert result["live_id"] in result["cancelled"]  # the user's render goes first
    rows = {job_id: (kind, state) for job_id, kind, state in result["rows"]}
    assert rows["j0"] == ("job.train_base", "finished")
    assert rows["j2"] == ("job.run_turn", "queued")
    assert result["panel_errors"] == []
    log = result["panel_log"]
    assert ["operator", "edit3d.cancel_job"] in log
    assert any(kind == "label" and "run_turn" in text for kind, text in log)


def test_renders_show_the_head_and_its_parent_turn_side_by_side(home: Path) -> None:
    result = run_bpy("before_after", home).result
    assert result["turns_asked"] == ["t1", None]  # the parent first, then the head
    assert result["before"] == ["Edit3D Render (before)", [1.0, 0.0, 0.0]]
    assert result["after"] == ["Edit3D Render", [0.0, 0.0, 1.0]]


def test_the_sidecars_editor_defaults_are_where_settings_start(home: Path) -> None:
    values = run_bpy("editor_defaults", home).result
    assert values["guidance_scale"] == pytest.approx(6.0)  # were 7.5 until connected
    assert values["image_guidance_scale"] == pytest.approx(1.25)
    assert values["lower_bound"] == pytest.approx(0.1)
    assert values["upper_bound"] == pytest.approx(0.9)
    assert values["use_diffusion_steps"] and values["diffusion_steps"] == 5  # overridden
    assert values["resolution"] == 512  # no fixed default on the sidecar: unchanged


def test_missing_weights_show_in_the_panel_and_stop_jobs_that_need_them(home: Path) -> None:
    no_segmentation = {"capabilities": ("profile.real",),
                       "weights_missing": ("sam-vit-h", "blip-caption-large", "gfpgan-v1.4")}
    result = run_bpy("missing_weights", home, {"sidecars": {
        "real": no_segmentation,
        "tiny": {**no_segmentation, "capabilities": ("profile.tiny",)},
        "complete": {"capabilities": ("profile.real",), "weights_missing": ()},
        "no_lpips": {"capabilities": ("profile.real",), "weights_missing": ("lpips-alex",)},
    }}).result
    real = result["real"]
    assert real["panel"][0] == "Missing weights: sam-vit-h, blip-caption-large, gfpgan-v1.4"
    # a turn without queries needs only InstructPix2Pix, which the sidecar has: sent
    assert real["attempts"]["turn_without_queries"] == {"result": ["FINISHED"], "error": ""}
    # with a query it needs SAM and the captioner; the fine-tune needs GFPGAN: not sent
    refused = real["attempts"]["turn_with_queries"]
    assert refused["result"] == ["CANCELLED"]
    assert "blip-caption-large" in refused["error"] and "sam-vit-h" in refused["error"]
    assert "edit3d models fetch blip-caption-large sam-vit-h" in refused["error"]
    assert "gfpgan-v1.4" in real["attempts"]["refine"]["error"]
    assert real["sent"] == ["job.run_turn"]
    # the tiny profile runs random miniatures: nothing is missing, everything is sent
    assert result["tiny"]["panel"][0].startswith("Tiny profile")
    assert result["tiny"]["sent"] == ["job.run_turn", "job.run_turn", "job.refine"]
    assert result["complete"]["panel"] == ["All model weights present"]
    assert result["complete"]["sent"] == ["job.run_turn", "job.run_turn", "job.refine"]
    # the panel's preset (Small) trains turns with L1 + LPIPS: no turn without its weights
    no_lpips = result["no_lpips"]
    assert no_lpips["sent"] == ["job.refine"]
    assert "edit3d models fetch lpips-alex" in no_lpips["attempts"]["turn_without_queries"]["error"]


def test_one_bar_per_job_and_preview_edit_on_a_new_camera(home: Path) -> None:
    result = run_bpy("edit_preview", home).result
    # the panel's bar for a turn: one share of the whole job, the phase beside it, never
    # restarting; the loss shows only while the turn trains
    bar = result["bar"]
    shares = [seen["progress"] for seen in bar]
    assert shares == sorted(shares) and shares[0] > 0 and shares[-1] == 1.0
    assert [seen["phase"] for seen in bar][:3] == ["prerender", "prerender", "masks"]
    assert [seen["bars"][0][0] for seen in bar] == pytest.approx(shares)
    assert bar[2]["bars"][0][1].startswith("masks 2/4  ETA")
    assert [seen["loss"] for seen in bar] == pytest.approx([0, 0, 0, 0.3, 0.2, 0])
    assert all(seen["eta_s"] >= 0 for seen in bar)

    # Preview Edit: the active (new) camera, the turn fields, only the overridden settings
    assert result["pressed"]["result"] == ["FINISHED"]
    sent = result["sent"]
    assert (sent["width"], sent["height"]) == (40, 30) and sent["c2w_error"] < 1e-6
    assert (sent["seed"], sent["seeds"], sent["instruction"]) == (5, 2, "make it red")
    assert sent["settings"] == {"guidance_scale": 6.0, "diffusion_steps": 3}
    # one image: before | mask overlay | after per seed, pixels as the sidecar sent them
    assert result["image"] == {"name": "Edit3D Preview", "size": [160, 30], "in_data": True}
    pixels = np.array(result["pixels"])
    before = np.array(result["sent_arrays"]["before"]) / 255.0
    after = np.array(result["sent_arrays"]["after"]) / 255.0
    mask = np.array(result["sent_arrays"]["mask"], bool)
    tolerance = 1 / 255 + 1e-4  # 8-bit image storage
    np.testing.assert_allclose(pixels[:, :40], before, atol=tolerance)
    np.testing.assert_allclose(pixels[:, 80:120], after[0], atol=tolerance)
    np.testing.assert_allclose(pixels[:, 120:], after[1], atol=tolerance)
    overlay = pixels[:, 40:80]
    np.testing.assert_allclose(overlay[~mask], before[~mask], atol=tolerance)
    assert np.abs(overlay[mask] - before[mask]).mean() > 0.05  # the edited region is tinted
    assert overlay[mask][:, 0].mean() > before[mask][:, 0].mean()  # towards red
    assert result["after_preview_loss"] == 0.0

    # Use These Settings: the second seed and the preview's settings become the turn's
    assert result["used"]["result"] == ["FINISHED"]
    assert result["after_use"] == {"seed": 6, "guidance_scale": 6.0, "use_guidance_scale": True,
                                   "use_diffusion_steps": True, "diffusion_steps": 3}
    assert result["turn_seeds"] == [5, 6]
    assert result["turn_settings"] == [None, {"guidance_scale": 6.0, "diffusion_steps": 3}]
    panel = result["turns_panel"]
    assert panel["errors"] == []
    drawn = [entry for entry in panel["log"] if entry[0] in ("operator", "prop")]
    assert ["operator", "edit3d.preview_edit"] in drawn
    assert ["operator", "edit3d.use_preview_settings"] in drawn
    assert ["prop", "use_guidance_scale"] in drawn and ["prop", "guidance_scale"] in drawn
    assert ["prop", "use_resolution"] in drawn and ["prop", "resolution"] not in drawn
