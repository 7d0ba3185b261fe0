"""The one conversion between the protocol's camera record and the method's.

Both describe the same pinhole camera in the dataset's world frame (OpenGL axes: looks down
-Z, +Y up) with pixel intrinsics, so the conversion copies values and changes no frame.
"""

from __future__ import annotations

import numpy as np

from edit3d.scene.cameras import CameraView, Intrinsics
from protocol.messages import Camera

UNNAMED_CAMERA = "camera"
"""Name of a method camera made from a protocol camera that names no dataset view."""


def to_method(camera: Camera) -> CameraView:
    """A protocol Camera as the method's CameraView."""
    intrinsics = Intrinsics(fx=camera.fx, fy=camera.fy, cx=camera.cx, cy=camera.cy,
                            width=camera.width, height=camera.height)
    return CameraView(camera.name or UNNAMED_CAMERA, np.array(camera.c2w), intrinsics)


def to_protocol(view: CameraView) -> Camera:
    """The method's CameraView as a protocol Camera."""
    intrinsics = view.intrinsics
    return Camera(c2w=np.ascontiguousarray(view.c2w, dtype="<f8"), fx=float(intrinsics.fx),
                  fy=float(intrinsics.fy), cx=float(intrinsics.cx), cy=float(intrinsics.cy),
                  width=int(intrinsics.width), height=int(intrinsics.height), name=view.name)
