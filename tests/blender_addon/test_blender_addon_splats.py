"""3DGS splats into a real headless Blender: File > Import of a PLY and a sidecar export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from blender_harness import installed_home, run_bpy

from edit3d.export.geometry import SH_C0, GaussianSplats, PointCloud
from edit3d.export.ply import write_gaussian_splat_ply, write_point_cloud_ply

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_home(tmp_path_factory.mktemp("blender"))


def _quat(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def _matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


RGB = np.array([[0.9, 0.1, 0.1], [0.2, 0.7, 0.3], [0.5, 0.5, 0.5]])
SPLATS = GaussianSplats(
    means=[[0.0, 0.0, 0.0], [1.5, 0.5, 0.2], [-1.0, -0.5, 0.1]],
    scales_log=np.log([[0.8, 0.6, 0.05], [0.1, 0.2, 0.3], [0.05, 0.05, 0.05]]),
    quats_wxyz=[_quat([0, 0, 1], 0.4) * 3.0, _quat([1, 1, 0], 1.0), [1.0, 0.0, 0.0, 0.0]],
    opacities_logit=[4.0, 0.0, -1.0],
    sh_dc=GaussianSplats.dc_from_rgb(RGB),
    sh_rest=np.full((3, 3, 3), 0.01),  # degree 1: skipped by the importer, not misread
)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _check(seen: dict) -> None:
    """Attributes, modifier, material and the instances Geometry Nodes makes of them."""
    assert ("rotation", "POINT", "QUATERNION") in [tuple(d) for d in seen["domains"]]
    assert ("scale", "POINT", "FLOAT_VECTOR") in [tuple(d) for d in seen["domains"]]
    assert ("opacity", "POINT", "FLOAT") in [tuple(d) for d in seen["domains"]]
    assert ("Color", "POINT", "FLOAT_COLOR") in [tuple(d) for d in seen["domains"]]
    np.testing.assert_allclose(seen["position"], SPLATS.means, atol=1e-6)
    np.testing.assert_allclose(np.array(seen["color"])[:, :3], _srgb_to_linear(RGB), atol=1e-5)
    expected_opacity = 1 / (1 + np.exp(-SPLATS.opacities_logit))
    np.testing.assert_allclose(np.ravel(seen["opacity"]), expected_opacity, atol=1e-6)
    np.testing.assert_allclose(seen["scale"], np.exp(SPLATS.scales_log), rtol=1e-5)
    unit = SPLATS.quats_wxyz / np.linalg.norm(SPLATS.quats_wxyz, axis=1, keepdims=True)
    np.testing.assert_allclose(seen["rotation"], unit, atol=1e-6)
    assert seen["modifier"] == ["NODES", "Edit3D Splats"]
    assert seen["materials"] == ["Edit3D Splat"]
    # each splat is one ico-sphere instance at its centre, turned and stretched as the Gaussian
    # (2 standard deviations, the Size)
    instances = sorted((np.array(m) for m in seen["instances"]), key=lambda m: m[0, 3])
    assert len(instances) == 3
    for index in np.argsort(SPLATS.means[:, 0]):
        matrix = instances.pop(0)
        np.testing.assert_allclose(matrix[:3, 3], SPLATS.means[index], atol=1e-5)
        sigma = np.exp(SPLATS.scales_log[index])
        expected = _matrix(SPLATS.quats_wxyz[index]) @ np.diag(2.0 * sigma)
        np.testing.assert_allclose(matrix[:3, :3], expected, atol=1e-5)


def test_a_3dgs_ply_and_a_sidecar_export_become_visible_splat_objects(home, tmp_path):
    ply = write_gaussian_splat_ply(tmp_path / "garden.ply", SPLATS)
    cloud = PointCloud(points=np.zeros((4, 3)), colors=np.zeros((4, 3)))
    not_splats = write_point_cloud_ply(tmp_path / "cloud.ply", cloud)
    truncated = tmp_path / "cut.ply"
    truncated.write_bytes(ply.read_bytes()[:-10])
    export_result = {
        "job_id": "j1", "turn_id": "t1", "kind": "splats", "format": "ply",
        "path": "exports/splats-t1-j1.ply", "points": SPLATS.means.tolist(),
        "sh_dc": SPLATS.sh_dc.tolist(), "opacity_logits": SPLATS.opacities_logit.tolist(),
        "log_scales": SPLATS.scales_log.tolist(), "rotations": SPLATS.quats_wxyz.tolist(),
    }  # fmt: skip
    result = run_bpy("splats", home, {
        "ply": str(ply), "not_splats": str(not_splats), "truncated": str(truncated),
        "out_dir": str(tmp_path),
        "export_result": export_result,
    }).result  # fmt: skip
    assert result["import_menu"] is True
    assert result["operator"] == ["FINISHED"]
    _check(result["file"])
    not_splats_error, truncated_error = result["refused"]
    assert "not a 3DGS PLY" in not_splats_error and "f_dc_0" in not_splats_error
    assert "holds 2 of its 3 splats (truncated)" in truncated_error
    # the big, nearly opaque red splat at the origin fills part of the frame, in red
    render = result["render"]
    assert render["coverage"] > 0.05, render
    red, green, blue = render["mean_rgb"]
    assert red > 2 * max(green, blue), render
    _check(result["sidecar"])
    assert result["sidecar_collection"] == "Edit3D Exports"


def test_sh_c0_matches_the_addons_constant() -> None:
    import ast

    source = (Path(__file__).resolve().parents[2] / "blender_addon" / "splat_io.py").read_text()
    consts = {
        node.targets[0].id: node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        and isinstance(node.targets[0], ast.Name)
    }
    assert consts["SH_C0"] == SH_C0
