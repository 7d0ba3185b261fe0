"""Add-on preferences: where the sidecar is, how to authenticate, and a local sidecar."""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

from .connection import LinkSettings


def addon_package() -> str:
    """The add-on's package name (bl_ext.<repo>.edit3d when installed as an extension)."""
    return __package__ or "edit3d"


def _seconds(name: str, setting: str, low: float, high: float, description: str) -> Any:
    """A duration preference whose default is `LinkSettings`' `setting` (its one owner)."""
    return FloatProperty(
        name=name,
        default=getattr(LinkSettings, setting),
        min=low,
        max=high,
        unit="TIME_ABSOLUTE",
        description=description,
    )


def get_preferences(context: bpy.types.Context | None = None) -> EDIT3D_AP_preferences:
    ctx = context or bpy.context
    return ctx.preferences.addons[addon_package()].preferences


class EDIT3D_AP_preferences(bpy.types.AddonPreferences):
    """Sidecar endpoint and key, timeouts, and the local sidecar launcher."""

    bl_idname = addon_package()

    connection_file: StringProperty(
        name="Connection file",
        subtype="FILE_PATH",
        description="The JSON file the sidecar writes (endpoint + key); preferred over the "
        "fields below",
    )
    endpoint: StringProperty(
        name="Endpoint", default="tcp://127.0.0.1:5555", description="ZeroMQ endpoint"
    )
    key_hex: StringProperty(
        name="Key", subtype="PASSWORD", description="Shared HMAC key (hex) of the sidecar"
    )
    request_timeout_s: _seconds(
        "Request timeout", "request_timeout_s", 0.5, 600.0,
        "A request with no reply after this long is reported as failed",
    )  # fmt: skip
    heartbeat_interval_s: _seconds(
        "Heartbeat interval", "heartbeat_interval_s", 0.2, 60.0,
        "How often a connected add-on checks that the sidecar still answers",
    )  # fmt: skip
    lost_after_s: _seconds(
        "Lost after", "lost_after_s", 0.5, 600.0,
        "Silence after which the sidecar is shown as lost (and reconnected)",
    )  # fmt: skip
    poll_interval_s: _seconds(
        "Poll interval", "poll_interval_s", 0.02, 2.0,
        "How often the add-on reads the socket (never blocking)",
    )  # fmt: skip
    sidecar_python: StringProperty(
        name="Sidecar Python",
        subtype="FILE_PATH",
        description="Python executable of an environment where edit3d is installed",
    )
    sidecar_workdir: StringProperty(
        name="Sidecar workdir", subtype="DIR_PATH", description="Sessions are kept here"
    )
    sidecar_device: EnumProperty(
        name="Device",
        items=(
            ("auto", "Automatic", "CUDA when the sidecar's torch finds a GPU, else the CPU"),
            ("cuda", "CUDA", "The GPU (fails when there is none)"),
            ("cpu", "CPU", "The CPU (slow; tiny models and checks)"),
        ),
    )
    sidecar_tiny: BoolProperty(
        name="Tiny models",
        description="Run the sidecar with tiny random models: a pipeline check, never an edit",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        col = layout.column(heading="Sidecar")
        col.prop(self, "connection_file")
        sub = col.column()
        sub.active = not self.connection_file
        sub.prop(self, "endpoint")
        sub.prop(self, "key_hex")
        col = layout.column(heading="Timing")
        col.prop(self, "request_timeout_s")
        col.prop(self, "heartbeat_interval_s")
        col.prop(self, "lost_after_s")
        col.prop(self, "poll_interval_s")
        box = layout.box()
        box.label(text="Local sidecar", icon="CONSOLE")
        box.prop(self, "sidecar_python")
        box.prop(self, "sidecar_workdir")
        row = box.row()
        row.prop(self, "sidecar_device")
        row.prop(self, "sidecar_tiny")
        row = box.row()
        row.operator("edit3d.start_sidecar", icon="PLAY")
        row.operator("edit3d.stop_sidecar", icon="PAUSE")


classes = (EDIT3D_AP_preferences,)
