"""The extension in a real headless Blender, without a sidecar: packaging, cameras, images,
point clouds, panels, and the connection's failure path."""

from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from blender_harness import (
    ROOT,
    build_zip,
    install_result,
    installed_home,
    run_bpy,
)

pytestmark = pytest.mark.blender


@pytest.fixture(scope="session")
def blender_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("blender")


@pytest.fixture(scope="session")
def home(blender_root: Path) -> Path:
    return installed_home(blender_root)


# --- packaging ---------------------------------------------------------------------------


def test_zip_bundles_addon_protocol_and_locked_wheels(blender_root: Path) -> None:
    zip_path = build_zip(blender_root / "dist")
    lock = {
        line.split()[1]: line.split()[0]
        for line in (ROOT / "blender_addon" / "wheels.lock").read_text().splitlines()
        if line and not line.startswith("#")
    }
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        manifest = zf.read("blender_manifest.toml").decode()
        dates = {info.date_time for info in zf.infolist()}
    assert names[0] == "blender_manifest.toml"
    assert names[1:] == sorted(names[1:]), "entries must be in a fixed order"
    assert len(names) == len(set(names)), "no entry may be bundled twice"
    assert dates == {(2024, 1, 1, 0, 0, 0)}
    for required in ("__init__.py", "connection.py", "scene_io.py", "protocol/__init__.py"):
        assert required in names
    wheels = sorted(n.removeprefix("wheels/") for n in names if n.startswith("wheels/"))
    assert wheels == sorted(lock)
    for project in ("pyzmq-27.3.0", "msgpack-1.2.4"):
        for tag in ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "macosx"):
            assert any(w.startswith(project) and tag in w for w in wheels), (project, tag)
    assert 'blender_version_min = "4.2.0"' in manifest
    assert "network = " in manifest
    assert all(f'"./wheels/{w}"' in manifest for w in wheels)
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)


def test_build_is_deterministic_and_offline(blender_root: Path, tmp_path: Path) -> None:
    first = build_zip(blender_root / "dist")
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "build_addon.py"), "--offline", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    second = tmp_path / first.name
    assert second.read_bytes() == first.read_bytes()
    assert f"built {second}" in proc.stdout


def test_install_enables_extension_without_touching_the_network(home: Path) -> None:
    result = install_result().result
    assert result["enabled"] is True
    assert result["zmq_loaded_by_register"] is False  # no socket library, no network at register


def test_new_process_loads_zmq_and_msgpack_from_bundled_wheels(home: Path) -> None:
    result = run_bpy("bundled_imports", home).result
    site = Path(result["extension_site_packages"]).resolve()
    assert result["zmq_importable_before_enable"] is False  # the bpy venv has no pyzmq
    assert result["zmq_imported_by_register"] is False
    assert Path(result["zmq_file"]).resolve().is_relative_to(site)
    assert Path(result["msgpack_file"]).resolve().is_relative_to(site)
    assert result["zmq_version"] == "27.3.0"
    assert result["msgpack_version"] == "1.2.4"
    addon_dir = Path(result["addon_file"]).parent
    assert Path(result["protocol_file"]).parent == addon_dir / "protocol"  # vendored copy
    assert result["scene_has_props"] is True
    assert result["scene_props_after_disable"] is False
    assert set(result["panels"]) >= {
        "VIEW3D_PT_edit3d_connection",
        "VIEW3D_PT_edit3d_scene",
        "VIEW3D_PT_edit3d_turns",
        "VIEW3D_PT_edit3d_preview",
        "VIEW3D_PT_edit3d_export",
    }


# --- cameras -----------------------------------------------------------------------------


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _write_transforms(path: Path, count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        c2w = np.eye(4)
        c2w[:3, :3] = _random_rotation(rng)
        c2w[:3, 3] = rng.uniform(-5, 5, 3)
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": c2w.tolist()})
    data = {"fl_x": 70.0, "fl_y": 72.5, "cx": 30.5, "cy": 25.25, "w": 64, "h": 48, "frames": frames}
    path.write_text(json.dumps(data))
    return data


def test_imported_cameras_reproduce_dataset_poses_and_intrinsics(home: Path, tmp_path: Path):
    data = _write_transforms(tmp_path / "transforms.json", 6, seed=3)
    result = run_bpy("cameras", home, {"transforms": str(tmp_path / "transforms.json")}).result
    expected_k = [data["fl_x"], data["fl_y"], data["cx"], data["cy"]]
    assert result["resolution"] == [64, 48]
    assert result["count_after_reimport"] == 6
    assert result["scene_camera"] == "images/frame_00000.png"
    for cam, frame in zip(result["cameras"], data["frames"], strict=True):
        assert cam["in_collection"]
        assert cam["view_name"] == frame["file_path"]
        # Blender stores object matrices in float32
        np.testing.assert_allclose(cam["matrix_world"], frame["transform_matrix"], atol=2e-6)
        assert cam["lens"] == pytest.approx(data["fl_x"] * cam["sensor_width"] / data["w"])
        # inverse (our formulas) and Blender's own projection agree with the dataset
        np.testing.assert_allclose(cam["inverse"][:4], expected_k, rtol=1e-5, atol=1e-4)
        assert cam["inverse"][4:] == [64, 48]
        np.testing.assert_allclose(cam["blender_projection"], expected_k, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(cam["inverse_c2w"], frame["transform_matrix"], atol=2e-6)


def test_blender_camera_to_intrinsics_matches_blenders_projection(home: Path) -> None:
    rng = np.random.default_rng(7)
    cases = []
    for fit in ("AUTO", "HORIZONTAL", "VERTICAL"):
        for size in ((64, 48), (48, 80)):
            for aspect in ((1, 1), (1.5, 1), (1, 2)):
                c2w = np.eye(4)
                c2w[:3, :3] = _random_rotation(rng)
                c2w[:3, 3] = rng.uniform(-3, 3, 3)
                cases.append(
                    {
                        "fit": fit,
                        "sensor": [float(rng.uniform(20, 40)), float(rng.uniform(15, 30))],
                        "lens": float(rng.uniform(18, 85)),
                        "shift": [float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.3, 0.3))],
                        "size": list(size),
                        "aspect": list(aspect),
                        "c2w": c2w.tolist(),
                    }
                )
    cases.append({**cases[0], "percent": 50})
    rows = run_bpy("camera_inverse", home, {"cases": cases}).result["rows"]
    assert len(rows) == len(cases)
    for row in rows:
        case = row["case"]
        scale = case.get("percent", 100) / 100
        assert row["ours"][4:] == [round(case["size"][0] * scale), round(case["size"][1] * scale)]
        label = json.dumps({k: case[k] for k in ("fit", "size", "aspect")})
        np.testing.assert_allclose(
            row["ours"][:4], row["blender"], rtol=1e-5, atol=1e-3, err_msg=label
        )
        np.testing.assert_allclose(row["c2w"], case["c2w"], atol=2e-6)


# --- images and geometry -----------------------------------------------------------------


def test_image_datablock_rows_are_flipped_to_blenders_bottom_up_order(home: Path) -> None:
    result = run_bpy("images", home, {"width": 24, "height": 16}).result
    step = 1 / 255 + 1e-6  # byte-backed datablock
    assert result["max_err_raw_bottom_row_vs_image_last_row"] <= step
    assert result["max_err_raw_top_row_vs_image_first_row"] <= step
    assert result["max_err_roundtrip"] <= step
    assert result["alpha_min"] == 1.0
    assert result["size"] == [24, 16]
    assert result["mask_colorspace"] == "Non-Color"
    assert result["mask_top_left"] == pytest.approx(0.0, abs=step)
    assert result["mask_bottom_right"] == pytest.approx(1.0, abs=step)
    assert result["resized_size"] == [24, 8]
    assert result["images_named_probe"] == 2


def test_point_cloud_and_mesh_objects_keep_world_positions_and_colours(home: Path) -> None:
    result = run_bpy("point_cloud", home, {"count": 20000}).result
    assert result["vertex_count"] == 20000
    assert (result["attr_domain"], result["attr_type"]) == ("POINT", "FLOAT_COLOR")
    assert result["active_color"] == "Color"
    assert result["max_color_err"] < 1e-6
    assert result["max_alpha_err"] == 0.0
    assert result["max_position_err"] < 1e-6
    assert result["objects_named_cloud"] == 1
    assert result["replaced_count"] == 10
    assert result["tet_polygons"] == 4
    assert result["tet_loops"] == result["tet_faces"]


# --- panels ------------------------------------------------------------------------------

PANEL_STATES = [
    {"connection_state": "DISCONNECTED", "job_state": "NONE"},
    {"connection_state": "CONNECTING", "connection_message": "waiting"},
    {
        "connection_state": "CONNECTED",
        "server_version": "0.1.0",
        "device": "cuda (H100)",
        "gpu_memory_total_gb": 80.0,
        "gpu_memory_free_gb": 70.0,
        "session_id": "s1",
        "job_state": "QUEUED",
        "job_kind": "job.train_base",
        "queue_position": 2,
    },
    {
        "connection_state": "CONNECTED",
        "session_id": "s1",
        "job_state": "RUNNING",
        "job_kind": "job.run_turn",
        "progress": 0.25,
        "step": 25,
        "total": 100,
        "eta_s": 125.0,
        "loss": 0.01,
        "job_message": "edited frame_00003.png",
        "images": True,
        "mask_caption": "a person standing",
        "turns": [
            {"turn_id": "base", "kind": "base", "status": "finished"},
            {
                "turn_id": "t1",
                "parent": "base",
                "kind": "edit",
                "status": "interrupted",
                "instruction": "make it red",
                "edit_queries": "shirt",
            },
        ],
        "active_turn_index": 1,
        "head": "base",
        "sessions": [
            {"session_id": "s1", "label": "garden", "turn_count": 2, "busy": True},
            {"session_id": "s2", "label": "statue", "turn_count": 0},
        ],
        "jobs": [
            {"job_id": "j1", "kind": "job.run_turn", "session_id": "s1", "state": "running",
             "step": 25, "total": 100, "progress": 0.25, "eta_s": 125.0},
            {"job_id": "j2", "kind": "job.render", "session_id": "s1", "state": "queued",
             "queue_position": 1},
            {"job_id": "j0", "kind": "job.train_base", "session_id": "s1", "state": "failed",
             "message": "worker crashed"},
        ],
    },
    {
        "connection_state": "LOST",
        "job_state": "FAILED",
        "job_message": "worker crashed",
        "reports": [("ERROR", "Lost the sidecar"), ("INFO", "x")],
        "images": False,
    },
    {"connection_state": "CONNECTED", "job_state": "CANCELLED", "source": "NERFSTUDIO_RUN"},
    {
        "connection_state": "CONNECTED",
        "job_state": "FINISHED",
        "source": "UPLOAD",
        "auto_caption": False,
        "live_preview": True,
        "turns": [],
        "active_turn_index": 5,
    },
]


def test_every_panel_draws_in_every_state(home: Path) -> None:
    outcomes = run_bpy("panels", home, {"states": PANEL_STATES}).result["outcomes"]
    assert len(outcomes) == 6 * len(PANEL_STATES)
    for outcome in outcomes:
        assert outcome["errors"] == [], (outcome["panel"], outcome["state"], outcome["errors"])
        assert outcome["log"], outcome["panel"]
    by_state = {}
    for outcome in outcomes:
        by_state.setdefault(json.dumps(outcome["state"], sort_keys=True), []).extend(outcome["log"])
    running = by_state[json.dumps(PANEL_STATES[3], sort_keys=True)]
    bars = [entry[1] for entry in running if entry[0] == "progress"]
    assert bars and all(b[0] == pytest.approx(0.25) for b in bars)
    assert all("25/100" in b[1] and "ETA 2:05" in b[1] for b in bars)
    assert ["operator", "edit3d.cancel_job"] in running
    assert ["operator", "edit3d.resume_turn"] in running  # interrupted turn selected
    assert ["label", "caption: a person standing"] in running
    assert ["template_list", "EDIT3D_UL_sessions"] in running
    assert ["label", "s1  2 turns (busy)"] in running
    queued = by_state[json.dumps(PANEL_STATES[2], sort_keys=True)]
    assert ["label", "2 job(s) ahead"] in queued
    assert ["label", "GPU memory: 70.0 free of 80.0 GB"] in queued
    disconnected = by_state[json.dumps(PANEL_STATES[0], sort_keys=True)]
    assert ["operator", "edit3d.connect"] in disconnected
    assert not any(e[0] == "operator" and e[1] == "edit3d.cancel_job" for e in disconnected)


# --- connecting to nothing ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_timing_preferences_start_at_the_links_defaults(home: Path) -> None:
    durations = run_bpy("preference_durations", home).result
    ranges = {"request_timeout_s": [0.5, 600.0], "heartbeat_interval_s": [0.2, 60.0],
              "lost_after_s": [0.5, 600.0], "poll_interval_s": [0.02, 2.0]}  # fmt: skip
    assert set(durations) == set(ranges)
    for name, shown in durations.items():
        assert shown["shown"] == pytest.approx(shown["link_default"]), name
        assert shown["sent"] == pytest.approx(shown["link_default"]), name
        assert shown["unit"] == "TIME_ABSOLUTE", name
        assert shown["range"] == pytest.approx(ranges[name]), name


def test_no_sidecar_is_reported_within_the_timeout_without_freezing(home: Path) -> None:
    args = {
        "endpoint": f"tcp://127.0.0.1:{_free_port()}",
        "key_hex": "ab" * 32,
        "request_timeout_s": 1.5,
        "limit_s": 6.0,
    }
    result = run_bpy("no_sidecar", home, args).result
    # online access off, a sidecar on another machine: refused before any socket exists
    assert result["offline_result"] == ["CANCELLED"]
    assert "Allow Online Access" in result["offline_error"]
    assert result["offline_state"] == "DISCONNECTED"
    assert result["offline_socket"] is False
    # online access still off, a loopback endpoint: allowed; the operator returns at once
    # and the poll step reports the silence
    assert result["online_result"] == ["FINISHED"]
    assert result["connect_call_s"] < 0.5
    assert result["state_after_call"] == "CONNECTING"
    assert result["timer_registered_after_connect"] is True
    assert result["final_state"] == "DISCONNECTED"
    assert 1.4 <= result["elapsed"] <= 3.0
    assert result["longest_tick"] < 0.05
    errors = [m for level, m in result["reports"] if level == "ERROR"]
    assert len(errors) == 1 and "No answer from the sidecar" in errors[0]
    assert args["endpoint"] in errors[0]
    assert result["timer_registered_after_disable"] is False


def test_a_sidecar_of_another_protocol_major_is_refused_with_a_clear_report(home: Path) -> None:
    result = run_bpy("version_mismatch", home).result
    assert result["state"] == "DISCONNECTED"
    assert result["ready"] is False
    errors = [m for level, m in result["reports"] if level == "ERROR"]
    assert len(errors) == 1
    assert "speaks protocol 3.0, this client 2." in errors[0]


def test_values_the_protocol_refuses_are_reported_and_never_sent(home: Path) -> None:
    result = run_bpy("refused_fields", home).result
    assert result["ready"] is True
    assert result["long_instruction"]["result"] == ["CANCELLED"]
    assert "instruction" in result["long_instruction"]["error"]
    assert result["many_queries"]["result"] == ["CANCELLED"]
    assert "edit_queries" in result["many_queries"]["error"]
    assert "job.run_turn" not in result["received"]
    assert result["job_state"] == "NONE"


def test_training_jobs_carry_the_scene_camera_and_heartbeats_update_free_memory(
    home: Path,
) -> None:
    result = run_bpy("job_requests", home).result
    kinds = {"job.train_base", "job.run_turn", "job.resume_turn"}
    # live preview on: each training job asks for frames of the scene camera
    assert set(result["live_on"]) == kinds
    for kind, sent in result["live_on"].items():
        assert sent["preview_every"] is None, kind  # the sidecar's default cadence
        camera = sent["camera"]
        assert camera is not None, kind
        np.testing.assert_allclose(camera["c2w"], result["expected_c2w"], atol=1e-6)
        assert np.asarray(camera["c2w"])[:3, 3].tolist() == pytest.approx([1.0, -2.0, 3.0])
        assert [camera["width"], camera["height"]] == result["render_size"]
    # live preview off: no camera, and no frames that would be dropped unseen
    assert set(result["live_off"]) == kinds
    for kind, sent in result["live_off"].items():
        assert sent == {"preview_every": 0, "camera": None}, kind
    # the handshake's 70 GB free is replaced by the heartbeat's 12 GB, shown in the panel
    assert result["free_after_handshake"] == pytest.approx(70.0)
    assert result["heartbeats"] >= 1
    assert result["free_after_heartbeat"] == pytest.approx(12.0)
    assert result["panel_errors"] == []
    assert "GPU memory: 12.0 free of 80.0 GB" in result["panel_labels"]
