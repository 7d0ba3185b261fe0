"""job.export of kind splats: the field's Gaussians in the world frame as a 3DGS PLY and as
export.result arrays; what the protocol refuses."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edit3d.export.geometry import GaussianSplats
from edit3d.export.ply import read_gaussian_splat_ply
from protocol import messages as m
from protocol.codec import decode_record, encode_record
from protocol.errors import ProtocolError
from sidecar import edit3d_jobs

SPLATS = GaussianSplats(
    means=[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]],
    scales_log=[[-1.0, -2.0, -3.0], [0.0, 0.5, 1.0]],
    quats_wxyz=[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],
    opacities_logit=[0.5, -0.5],
    sh_dc=[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
    sh_rest=np.zeros((2, 3, 3)),
)


class SplatField:
    """Field frame = world frame shifted by +10 in x and halved (p_field = (p_world + t)/2)."""

    backend = "splat-test"

    def points_to_world(self, points_field: np.ndarray) -> np.ndarray:
        return np.asarray(points_field) * 2.0 - [10.0, 0.0, 0.0]

    def gaussians(self) -> GaussianSplats:
        return SPLATS


class NerfField:
    backend = "nerfacto"

    def points_to_world(self, points_field: np.ndarray) -> np.ndarray:
        return np.asarray(points_field)


def _run_export(tmp_path, monkeypatch, field, **request):
    monkeypatch.setattr(edit3d_jobs, "_workspace", lambda ctx: SimpleNamespace(head="base"))
    monkeypatch.setattr(edit3d_jobs, "_field", lambda ctx, workspace, turn_id: field)
    (tmp_path / "exports").mkdir(exist_ok=True)
    ctx = SimpleNamespace(request=m.JobExport(session_id="s1", kind="splats", **request),
                          job_id="j7", exports_dir=tmp_path / "exports")  # fmt: skip
    return edit3d_jobs.export(ctx)


def test_splat_export_writes_world_frame_ply_and_sends_the_gaussians(tmp_path, monkeypatch):
    result = _run_export(tmp_path, monkeypatch, SplatField())
    event = result["event"]
    assert (result["path"], result["count"]) == ("exports/splats-base-j7.ply", 2)
    assert event.kind == "splats" and event.path == result["path"]
    expected_means = SPLATS.means * 2.0 - [10.0, 0.0, 0.0]
    np.testing.assert_allclose(event.points, expected_means)
    np.testing.assert_allclose(event.log_scales, SPLATS.scales_log + np.log(2.0), atol=1e-6)
    np.testing.assert_allclose(event.rotations, SPLATS.quats_wxyz)
    np.testing.assert_allclose(event.opacity_logits, SPLATS.opacities_logit)
    np.testing.assert_allclose(event.sh_dc, SPLATS.sh_dc)
    assert event.colors is None and event.faces is None
    written = read_gaussian_splat_ply(tmp_path / result["path"])
    np.testing.assert_allclose(written.means, expected_means)
    # the event crosses the wire as any message does
    buffers: list[memoryview] = []
    body = encode_record(event, buffers)
    decoded = decode_record(m.ExportResult, body, buffers, "export.result", set())
    np.testing.assert_array_equal(decoded.rotations, event.rotations)


def test_splat_export_without_arrays_sends_only_the_path(tmp_path, monkeypatch):
    event = _run_export(tmp_path, monkeypatch, SplatField(), return_arrays=False)["event"]
    assert event.points is None and event.rotations is None
    assert (tmp_path / event.path).is_file()


def test_splat_export_of_a_nerf_fails_naming_what_to_export_instead(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="the nerfacto backend has no Gaussians; export a point"):
        _run_export(tmp_path, monkeypatch, NerfField())
    assert not list((tmp_path / "exports").iterdir())


def test_the_protocol_refuses_splats_in_other_formats_and_partial_splat_results():
    with pytest.raises((ProtocolError, ValueError), match=r"JobExport\.format"):
        m.JobExport(session_id="s1", kind="splats", format="glb")
    with pytest.raises((ProtocolError, ValueError), match="rotations"):
        m.ExportResult(job_id="j", kind="splats", format="ply", path="exports/x.ply",
                       points=SPLATS.means, sh_dc=SPLATS.sh_dc, log_scales=SPLATS.scales_log,
                       opacity_logits=SPLATS.opacities_logit)  # fmt: skip
    with pytest.raises((ProtocolError, ValueError), match=r"ExportResult\.opacity_logits"):
        m.ExportResult(job_id="j", kind="splats", format="ply", path="exports/x.ply",
                       points=SPLATS.means, sh_dc=SPLATS.sh_dc, log_scales=SPLATS.scales_log,
                       opacity_logits=np.zeros(3, np.float32), rotations=SPLATS.quats_wxyz)
