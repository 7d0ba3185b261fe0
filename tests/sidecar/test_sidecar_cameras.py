"""The one conversion between the protocol's Camera and the method's CameraView."""

from __future__ import annotations

import numpy as np
import pytest

from edit3d.scene.cameras import CameraView, Intrinsics
from protocol import messages as m
from sidecar import cameras


def _world_camera(seed: int) -> m.Camera:
    """A camera with a random rotation, translation and off-centre intrinsics."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation *= np.sign(np.linalg.det(rotation))  # a proper rotation
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rotation, rng.uniform(-50.0, 50.0, size=3)
    fx, fy = rng.uniform(100.0, 5000.0, size=2)
    cx, cy = rng.uniform(-20.0, 1000.0, size=2)
    return m.Camera(c2w=c2w, fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy),
                    width=int(rng.integers(1, 8192)), height=int(rng.integers(1, 8192)),
                    name=f"frame_{seed:05d}.png")


@pytest.mark.parametrize("seed", range(5))
def test_protocol_camera_round_trips_through_the_method_camera(seed: int) -> None:
    camera = _world_camera(seed)
    view = cameras.to_method(camera)
    assert isinstance(view, CameraView) and view.name == camera.name
    np.testing.assert_allclose(view.c2w, camera.c2w, rtol=0, atol=1e-9)
    k = np.array([[camera.fx, 0.0, camera.cx], [0.0, camera.fy, camera.cy], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(view.intrinsics.as_matrix(), k, rtol=0, atol=1e-9)
    assert (view.intrinsics.width, view.intrinsics.height) == (camera.width, camera.height)
    back = cameras.to_protocol(view)
    np.testing.assert_allclose(back.c2w, camera.c2w, rtol=0, atol=1e-9)
    assert back.c2w.dtype == np.dtype("<f8") and back.name == camera.name
    for name in ("fx", "fy", "cx", "cy"):
        assert abs(getattr(back, name) - getattr(camera, name)) <= 1e-9, name
    assert (back.width, back.height) == (camera.width, camera.height)


def test_method_camera_round_trips_through_the_protocol_camera() -> None:
    c2w = np.array([[0.0, -1.0, 0.0, 1.5], [1.0, 0.0, 0.0, -0.25], [0.0, 0.0, 1.0, 4.0]])
    view = CameraView("cam", c2w, Intrinsics(812.5, 811.0, 400.25, 299.75, 800, 600))
    back = cameras.to_method(cameras.to_protocol(view))
    np.testing.assert_allclose(back.c2w, view.c2w, rtol=0, atol=1e-9)
    assert back.intrinsics == view.intrinsics and back.name == "cam"


def test_the_method_camera_does_not_share_the_protocol_array() -> None:
    camera = _world_camera(7)
    view = cameras.to_method(camera)
    view.c2w[0, 3] += 1.0  # e.g. a job that moves its camera
    assert camera.c2w[0, 3] != view.c2w[0, 3]


def test_an_unnamed_protocol_camera_gets_the_placeholder_name() -> None:
    camera = m.Camera(c2w=np.eye(4), fx=10.0, fy=10.0, cx=5.0, cy=5.0, width=10, height=10)
    assert cameras.to_method(camera).name == cameras.UNNAMED_CAMERA
