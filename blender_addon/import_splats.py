"""File > Import > 3D Gaussian Splats (.ply): a local 3DGS PLY into the scene (no sidecar)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import FloatProperty, StringProperty

from . import scene_io, splat_io

IMPORT_COLLECTION = "Edit3D Splats"


class EDIT3D_OT_import_splats(bpy.types.Operator):
    """Import a 3D Gaussian Splatting PLY (reference layout) as oriented, coloured splats"""

    bl_idname = "edit3d.import_splats"
    bl_label = "Import 3D Gaussian Splats"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - it adds an object

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default="*.ply", options={"HIDDEN"})
    size: FloatProperty(
        name="Size",
        description="Splat radius in standard deviations of each Gaussian",
        default=splat_io.DEFAULT_SIZE,
        min=0.0,
    )

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = Path(bpy.path.abspath(self.filepath))
        try:
            splats = splat_io.read_splat_ply(path)
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, f"Cannot import {path.name}: {exc}")
            return {"CANCELLED"}
        coll = scene_io.ensure_collection(context.scene, IMPORT_COLLECTION)
        obj = splat_io.splat_object(path.stem, splats, coll, size=self.size)
        self.report({"INFO"}, f"{obj.name}: {len(splats.means)} splats")
        return {"FINISHED"}


def menu_entry(menu: Any, context: bpy.types.Context) -> None:
    menu.layout.operator(EDIT3D_OT_import_splats.bl_idname, text="3D Gaussian Splats (.ply)")


classes = (EDIT3D_OT_import_splats,)


def register_menu() -> None:
    bpy.types.TOPBAR_MT_file_import.append(menu_entry)


def unregister_menu() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_entry)
