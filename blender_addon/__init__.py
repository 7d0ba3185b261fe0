"""Edit3D for Blender: edit a captured scene with words through a GPU sidecar.

Structure: a PropertyGroup on the Scene (`scene.edit3d`, what the user sets) and one on the
window manager (`window_manager.edit3d`, runtime state, never saved) in props.py, add-on preferences
(preferences.py), operators (operators.py), sidebar panels (panels.py), the one sidecar
link and its poll timer over a protocol.Client (connection.py), replies and events applied
to properties (events.py), a sidecar started from Blender (local_sidecar.py), connection
files (connection_files.py), plain scene data conversions (scene_io.py), and 3DGS splats
(splat_io.py; File > Import in import_splats.py).
Registering opens no socket: the network is touched only when the user connects.
"""

from __future__ import annotations

import bpy

from . import connection, import_splats, operators, panels, preferences, props

classes = (
    *props.classes,
    *preferences.classes,
    *operators.classes,
    *import_splats.classes,
    *panels.classes,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    props.register_properties()
    import_splats.register_menu()
    _reset_runtime_state()


def unregister() -> None:
    # bpy 4.5 hangs at exit while a timer is registered: stop it before anything else
    connection.shutdown()
    import_splats.unregister_menu()
    props.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)


def _reset_runtime_state() -> None:
    """Re-enabling keeps the window manager's old values in memory; no link exists yet."""
    for wm in getattr(bpy.data, "window_managers", ()):  # restricted while Blender starts
        wm.edit3d.reset()
