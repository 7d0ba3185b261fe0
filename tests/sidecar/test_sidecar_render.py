"""Renders within a documented budget: refused early when too large, sent as float16 or uint8
when asked, done in strips that a cancel stops between."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edit3d.field.nerfacto_field import RenderResult
from edit3d.progress import Cancelled, CancelToken
from edit3d.scene.cameras import CameraView, Intrinsics
from protocol import messages as m
from sidecar import edit3d_jobs


def camera(width: int, height: int) -> m.Camera:
    return m.Camera(c2w=np.eye(4), fx=500.0, fy=500.0, cx=width / 2, cy=height / 2,
                    width=width, height=height)


def render_request(cam: m.Camera, outputs: tuple[str, ...], dtype: str = "float32"):
    return m.JobRender(session_id="s1", camera=cam, outputs=outputs, dtype=dtype)


def test_budget_refuses_what_one_frame_cannot_carry() -> None:
    budget = edit3d_jobs.render_budget_bytes()
    assert budget == 256 << 20
    side = int((budget / 12) ** 0.5)  # float32 rgb: 12 bytes per pixel
    check = edit3d_jobs.check_render_request
    check(render_request(camera(side, side), ("rgb",)))
    with pytest.raises(ValueError, match=r"render budget of 256 MiB.*float16.*uint8"):
        check(render_request(camera(side + 1, side + 1), ("rgb",)))
    big = camera(8192, 8192)
    with pytest.raises(ValueError, match="8192x8192 rgb as float32"):
        check(render_request(big, ("rgb",)))
    with pytest.raises(ValueError, match="8192x8192 rgb as float16"):
        check(render_request(big, ("rgb",), "float16"))
    check(render_request(big, ("rgb", "accumulation"), "uint8"))


class CountingField:
    """Renders a gradient that tells every row apart; counts calls."""

    def __init__(self) -> None:
        self.calls: list[Intrinsics] = []

    def render(self, view: CameraView) -> RenderResult:
        intr = view.intrinsics
        self.calls.append(intr)
        rows = (np.arange(intr.height) + (FULL_CY - intr.cy))[:, None]  # the full image's row
        depth = np.broadcast_to(rows, (intr.height, intr.width)).astype(np.float32)
        rgb = np.repeat(depth[..., None], 3, axis=2) / 1000.0
        return RenderResult(rgb=rgb, depth=depth, accumulation=np.ones_like(depth))


FULL_CY = 300.0


def view(width: int, height: int) -> CameraView:
    return CameraView("v", np.eye(4), Intrinsics(400.0, 400.0, width / 2, FULL_CY, width, height))


def ctx(cancel: CancelToken | None = None) -> SimpleNamespace:
    return SimpleNamespace(cancel=cancel or CancelToken())


def test_strips_shift_the_principal_point_and_reassemble_the_image(monkeypatch) -> None:
    monkeypatch.setattr(edit3d_jobs, "RENDER_STRIP_PIXELS", 64 * 10)
    field = CountingField()
    result = edit3d_jobs._render_in_strips(ctx(), field, view(64, 35))
    assert [c.height for c in field.calls] == [10, 10, 10, 5]
    assert [c.cy for c in field.calls] == [FULL_CY, FULL_CY - 10, FULL_CY - 20, FULL_CY - 30]
    assert result.depth.shape == (35, 64) and result.rgb.shape == (35, 64, 3)
    np.testing.assert_array_equal(result.depth[:, 0], np.arange(35))


def test_cancel_stops_a_render_between_strips(monkeypatch) -> None:
    monkeypatch.setattr(edit3d_jobs, "RENDER_STRIP_PIXELS", 64 * 10)
    field = CountingField()
    token = CancelToken(predicate=lambda: len(field.calls) >= 2)
    with pytest.raises(Cancelled):
        edit3d_jobs._render_in_strips(ctx(token), field, view(64, 100))
    assert len(field.calls) == 2  # not all 10 strips


def test_requested_dtypes_are_what_the_result_message_carries() -> None:
    rgb = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    as_uint8 = edit3d_jobs._as_dtype(rgb, "uint8", scaled=True)
    assert as_uint8.dtype == np.uint8 and as_uint8.tolist() == [[[0, 128, 255]]]
    as_half = edit3d_jobs._as_dtype(rgb, "float16", scaled=True)
    depth = edit3d_jobs._as_dtype(np.array([[np.inf]], np.float32), "uint8", scaled=False)
    assert as_half.dtype == np.float16 and depth.dtype == np.float16
    message = m.RenderResult(job_id="j", camera=camera(1, 1), rgb=as_uint8, depth=depth,
                             accumulation=edit3d_jobs._as_dtype(rgb[..., 0], "uint8",
                                                                scaled=True))
    assert message.rgb.dtype == np.uint8


@pytest.mark.slow
def test_strips_render_the_same_pixels_as_one_pass(tmp_path, monkeypatch) -> None:
    from edit3d.field import NerfactoField, get_preset
    from edit3d.field.testing import make_tiny_scene

    scene = make_tiny_scene(tmp_path / "scene", num_views=24)
    field = NerfactoField.from_dataset(scene.root, get_preset("tiny"), "cpu", seed=0)
    target = scene.views[3]
    whole = field.render(target)
    monkeypatch.setattr(edit3d_jobs, "RENDER_STRIP_PIXELS", target.intrinsics.width * 7)
    strips = edit3d_jobs._render_in_strips(ctx(), field, target)
    np.testing.assert_allclose(strips.rgb, whole.rgb, atol=1e-5)
    np.testing.assert_allclose(strips.depth, whole.depth, rtol=1e-4)
