"""Scenarios run inside a real headless Blender (bpy module), one per subprocess.

    python bpy_scenarios.py SCENARIO ARGS.json RESULT.json

Each scenario measures and returns plain data (JSON); the assertions live in the pytest
files, so a failure shows the numbers. Timers never fire in the bpy module, so scenarios
that talk to a sidecar call the add-on's poll step directly, as the timer would.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy  # must come first: it puts Blender's script modules (addon_utils) on sys.path
import numpy as np

ADDON = "bl_ext.user_default.edit3d"
SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def scenario(fn: Callable[[dict[str, Any]], dict[str, Any]]):
    SCENARIOS[fn.__name__] = fn
    return fn


def enable_addon() -> Any:
    import addon_utils

    if ADDON not in bpy.context.preferences.addons:
        addon_utils.enable(ADDON, default_set=True)
    if ADDON not in bpy.context.preferences.addons:
        raise RuntimeError(f"{ADDON} could not be enabled")
    return sys.modules[ADDON]


def disable_addon() -> None:
    import addon_utils

    if ADDON in bpy.context.preferences.addons:
        addon_utils.disable(ADDON, default_set=True)


def addon_module(name: str) -> Any:
    enable_addon()
    return sys.modules[f"{ADDON}.{name}"]


# --- install and packaging ---------------------------------------------------------------


@scenario
def install(args: dict[str, Any]) -> dict[str, Any]:
    bpy.ops.extensions.package_install_files(
        filepath=args["zip"], repo="user_default", enable_on_install=True
    )
    enabled = ADDON in bpy.context.preferences.addons
    zmq_loaded_by_register = "zmq" in sys.modules
    disable_addon()
    return {"enabled": enabled, "zmq_loaded_by_register": zmq_loaded_by_register}


@scenario
def bundled_imports(args: dict[str, Any]) -> dict[str, Any]:
    try:
        import zmq

        importable_before = True
    except ImportError:
        importable_before = False
    enable_addon()
    zmq_after_register = "zmq" in sys.modules
    import msgpack
    import zmq

    addon = sys.modules[ADDON]
    connection = sys.modules[f"{ADDON}.connection"]
    proto = connection.protocol_module()
    site = bpy.utils.user_resource("EXTENSIONS", path=".local/lib/python3.11/site-packages")
    result = {
        "zmq_importable_before_enable": importable_before,
        "zmq_imported_by_register": zmq_after_register,
        "zmq_file": zmq.__file__,
        "msgpack_file": msgpack.__file__,
        "zmq_version": zmq.__version__,
        "msgpack_version": ".".join(map(str, msgpack.version)),
        "extension_site_packages": site,
        "addon_file": addon.__file__,
        "protocol_file": proto.__file__,
        "scene_has_props": hasattr(bpy.types.Scene, "edit3d"),
        "panels": sorted(c.__name__ for c in addon.classes if c.__name__.startswith("VIEW3D_PT")),
    }
    disable_addon()
    result["scene_props_after_disable"] = hasattr(bpy.types.Scene, "edit3d")
    return result


# --- cameras -----------------------------------------------------------------------------


def _intrinsics_from_blender_projection(obj: Any, width: int, height: int) -> list[float]:
    """fx, fy, cx, cy from Blender's own projection matrix (independent of scene_io)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    scene = bpy.context.scene
    proj = np.array(
        obj.calc_matrix_camera(
            depsgraph,
            x=width,
            y=height,
            scale_x=scene.render.pixel_aspect_x,
            scale_y=scene.render.pixel_aspect_y,
        )
    )
    fx = proj[0, 0] * width / 2.0
    fy = proj[1, 1] * height / 2.0
    cx = width * (1.0 - proj[0, 2]) / 2.0
    cy = height * (1.0 + proj[1, 2]) / 2.0
    return [float(fx), float(fy), float(cx), float(cy)]


@scenario
def cameras(args: dict[str, Any]) -> dict[str, Any]:
    scene_io = addon_module("scene_io")
    scene = bpy.context.scene
    names, pinholes = scene_io.read_transforms_json(args["transforms"])
    bpy.ops.edit3d.import_transforms(filepath=args["transforms"])
    coll = bpy.data.collections[scene.edit3d.camera_collection]
    out = []
    for name, pin in zip(names, pinholes, strict=True):
        obj = bpy.data.objects[name]
        back = scene_io.pinhole_from_camera(obj, scene)
        out.append(
            {
                "name": name,
                "in_collection": obj.name in coll.objects,
                "matrix_world": np.array(obj.matrix_world).tolist(),
                "lens": obj.data.lens,
                "sensor_width": obj.data.sensor_width,
                "view_name": scene_io.dataset_view_name(obj),
                "inverse": [back.fx, back.fy, back.cx, back.cy, back.width, back.height],
                "inverse_c2w": back.c2w.tolist(),
                "blender_projection": _intrinsics_from_blender_projection(
                    obj, pin.width, pin.height
                ),
            }
        )
    # importing again replaces, never duplicates
    bpy.ops.edit3d.import_transforms(filepath=args["transforms"])
    return {
        "cameras": out,
        "count_after_reimport": len(coll.objects),
        "scene_camera": scene.camera.name if scene.camera else None,
        "resolution": [scene.render.resolution_x, scene.render.resolution_y],
    }


@scenario
def camera_inverse(args: dict[str, Any]) -> dict[str, Any]:
    """Blender camera → intrinsics for many fits/shifts/aspects vs Blender's projection."""
    scene_io = addon_module("scene_io")
    scene = bpy.context.scene
    cam = bpy.data.cameras.new("probe")
    obj = bpy.data.objects.new("probe", cam)
    scene.collection.objects.link(obj)
    rows = []
    for case in args["cases"]:
        cam.sensor_fit = case["fit"]
        cam.sensor_width, cam.sensor_height = case["sensor"]
        cam.lens = case["lens"]
        cam.shift_x, cam.shift_y = case["shift"]
        scene.render.resolution_x, scene.render.resolution_y = case["size"]
        scene.render.resolution_percentage = case.get("percent", 100)
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = case.get("aspect", (1, 1))
        obj.matrix_world = scene_io.Matrix(case["c2w"])
        bpy.context.view_layer.update()
        pin = scene_io.pinhole_from_camera(obj, scene)
        rows.append(
            {
                "case": case,
                "ours": [pin.fx, pin.fy, pin.cx, pin.cy, pin.width, pin.height],
                "blender": _intrinsics_from_blender_projection(obj, pin.width, pin.height),
                "c2w": pin.c2w.tolist(),
            }
        )
    return {"rows": rows}


# --- images and geometry -----------------------------------------------------------------


@scenario
def images(args: dict[str, Any]) -> dict[str, Any]:
    scene_io = addon_module("scene_io")
    height, width = args["height"], args["width"]
    rng = np.random.default_rng(0)
    image = rng.random((height, width, 3), dtype=np.float32)
    img = scene_io.image_to_datablock("probe", image)
    raw = np.empty(width * height * 4, dtype=np.float32)
    img.pixels.foreach_get(raw)
    raw = raw.reshape(height, width, 4)
    back = scene_io.datablock_to_image(img)
    grey = np.linspace(0, 1, height * width, dtype=np.float32).reshape(height, width)
    mask = scene_io.image_to_datablock("probe-mask", grey, non_color=True)
    size = list(img.size)
    resized = scene_io.image_to_datablock("probe", image[: height // 2])
    return {
        "max_err_raw_bottom_row_vs_image_last_row": float(np.abs(raw[0, :, :3] - image[-1]).max()),
        "max_err_raw_top_row_vs_image_first_row": float(np.abs(raw[-1, :, :3] - image[0]).max()),
        "max_err_roundtrip": float(np.abs(back[..., :3] - image).max()),
        "alpha_min": float(raw[..., 3].min()),
        "size": size,
        "mask_colorspace": mask.colorspace_settings.name,
        "mask_top_left": float(scene_io.datablock_to_image(mask)[0, 0, 0]),
        "mask_bottom_right": float(scene_io.datablock_to_image(mask)[-1, -1, 0]),
        "resized_size": list(resized.size),
        "images_named_probe": sum(1 for i in bpy.data.images if i.name.startswith("probe")),
    }


@scenario
def point_cloud(args: dict[str, Any]) -> dict[str, Any]:
    scene_io = addon_module("scene_io")
    n = args["count"]
    rng = np.random.default_rng(1)
    points = (rng.random((n, 3), dtype=np.float32) - 0.5) * 4.0
    colors = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    coll = scene_io.ensure_collection(bpy.context.scene, "probe")
    start = time.perf_counter()
    obj = scene_io.point_cloud_object("cloud", points, colors, coll)
    seconds = time.perf_counter() - start
    mesh = obj.data
    attr = mesh.color_attributes["Color"]
    stored = np.empty(n * 4, dtype=np.float32)
    attr.data.foreach_get("color", stored)
    stored = stored.reshape(n, 4)
    expected = scene_io.srgb_to_linear(colors.astype(np.float32) / 255.0)
    world = scene_io.mesh_points(obj)
    first = {
        "vertex_count": len(mesh.vertices),
        "attr_domain": attr.domain,
        "attr_type": attr.data_type,
        "active_color": mesh.color_attributes.active_color.name,
    }
    # replacing keeps one object
    scene_io.point_cloud_object("cloud", points[:10], colors[:10], coll)
    # a mesh with faces and colours
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]], dtype=np.int32)
    tet = scene_io.mesh_object("tet", verts, faces, np.full((4, 3), 0.5, np.float32), coll)
    loops = np.empty(len(tet.data.loops), dtype=np.int32)
    tet.data.loops.foreach_get("vertex_index", loops)
    return {
        "seconds": seconds,
        **first,
        "max_color_err": float(np.abs(stored[:, :3] - expected).max()),
        "max_alpha_err": float(np.abs(stored[:, 3] - 1.0).max()),
        "max_position_err": float(np.abs(world - points).max()),
        "objects_named_cloud": sum(1 for o in coll.objects if o.name.startswith("cloud")),
        "replaced_count": len(bpy.data.objects["cloud"].data.vertices),
        "tet_polygons": len(tet.data.polygons),
        "tet_loops": loops.tolist(),
        "tet_faces": faces.ravel().tolist(),
    }


# --- panels ------------------------------------------------------------------------------


class RecordingLayout:
    """A UILayout stand-in: records calls and checks properties and operators exist."""

    def __init__(self, log: list[tuple[str, Any]], errors: list[str]) -> None:
        self.log = log
        self.errors = errors
        self.enabled = True
        self.active = True

    def _child(self, kind: str) -> RecordingLayout:
        self.log.append((kind, None))
        return RecordingLayout(self.log, self.errors)

    def row(self, **_kw: Any) -> RecordingLayout:
        return self._child("row")

    def column(self, **_kw: Any) -> RecordingLayout:
        return self._child("column")

    def box(self) -> RecordingLayout:
        return self._child("box")

    def split(self, **_kw: Any) -> RecordingLayout:
        return self._child("split")

    def label(self, *, text: str = "", icon: str = "NONE", **_kw: Any) -> None:
        self._check_icon(icon)
        self.log.append(("label", text))

    def prop(self, data: Any, name: str, **kw: Any) -> None:
        if name not in data.bl_rna.properties:
            self.errors.append(f"prop {name!r} missing on {data.bl_rna.identifier}")
        self._check_icon(kw.get("icon", "NONE"))
        self.log.append(("prop", name))

    def operator(self, idname: str, *, icon: str = "NONE", **_kw: Any) -> Any:
        module, _, name = idname.partition(".")
        if not hasattr(getattr(bpy.ops, module), name) or not hasattr(
            bpy.types, f"{module.upper()}_OT_{name}"
        ):
            self.errors.append(f"operator {idname!r} is not registered")
        self._check_icon(icon)
        self.log.append(("operator", idname))
        return _OperatorProps(idname, self.errors)

    def progress(self, *, factor: float, type: str = "BAR", text: str = "") -> None:
        self.log.append(("progress", [factor, text]))

    def template_list(self, list_type: str, _id: str, data: Any, prop: str, active: Any,
                      active_prop: str, **_kw: Any) -> None:  # fmt: skip
        if not hasattr(bpy.types, list_type):
            self.errors.append(f"UIList {list_type!r} is not registered")
        for owner, name in ((data, prop), (active, active_prop)):
            if name not in owner.bl_rna.properties:
                self.errors.append(f"template_list property {name!r} missing")
        self.log.append(("template_list", list_type))

    def template_icon(self, *, icon_value: int, scale: float = 1.0) -> None:
        self.log.append(("template_icon", icon_value))

    def _check_icon(self, icon: str) -> None:
        valid = bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items
        if icon not in valid:
            self.errors.append(f"unknown icon {icon!r}")


class _OperatorProps:
    def __init__(self, idname: str, errors: list[str]) -> None:
        object.__setattr__(self, "_idname", idname)
        object.__setattr__(self, "_errors", errors)

    def __setattr__(self, name: str, value: Any) -> None:
        module, _, op = self._idname.partition(".")
        rna = getattr(getattr(bpy.ops, module), op).get_rna_type()
        if name not in rna.properties:
            self._errors.append(f"operator {self._idname} has no property {name!r}")


class _PanelSelf:
    def __init__(self, layout: RecordingLayout) -> None:
        self.layout = layout


def _set_state(props: Any, scene_io: Any, state: dict[str, Any]) -> None:
    for key, value in state.items():
        if key == "turns":
            props.turns.clear()
            for turn in value:
                item = props.turns.add()
                for k, v in turn.items():
                    setattr(item, k, v)
        elif key == "images":
            for attr in ("preview_image", "mask_image", "heatmap_image"):
                image = scene_io.image_to_datablock(attr, np.zeros((4, 4, 3), np.float32))
                setattr(props, attr, image if value else None)
        elif key == "reports":
            props.reports.clear()
            for level, message in value:
                item = props.reports.add()
                item.level, item.message = level, message
        else:
            setattr(props, key, value)


@scenario
def panels(args: dict[str, Any]) -> dict[str, Any]:
    addon = enable_addon()
    scene_io = sys.modules[f"{ADDON}.scene_io"]
    panel_classes = [c for c in addon.classes if c.__name__.startswith("VIEW3D_PT")]
    ul = next(c for c in addon.classes if c.__name__ == "EDIT3D_UL_turns")
    props = bpy.context.scene.edit3d
    outcomes = []
    for state in args["states"]:
        _set_state(props, scene_io, state)
        for cls in panel_classes:
            log: list[tuple[str, Any]] = []
            errors: list[str] = []
            try:
                cls.draw(_PanelSelf(RecordingLayout(log, errors)), bpy.context)
                for index, item in enumerate(props.turns):
                    ul.draw_item(
                        ul, bpy.context, RecordingLayout(log, errors), props, item, 0, props,
                        "active_turn_index", index,
                    )  # fmt: skip
            except Exception:
                errors.append(traceback.format_exc())
            outcomes.append({"state": state, "panel": cls.__name__, "log": log, "errors": errors})
    return {"outcomes": outcomes}


# --- connection without a sidecar --------------------------------------------------------


def _poll_until(connection: Any, predicate: Callable[[], bool], limit_s: float) -> dict[str, Any]:
    """Call the poll step like the timer would; measure the longest tick."""
    start = time.monotonic()
    longest = 0.0
    ticks = 0
    while time.monotonic() - start < limit_s:
        t0 = time.perf_counter()
        connection.poll_once(bpy.context)
        longest = max(longest, time.perf_counter() - t0)
        ticks += 1
        if predicate():
            break
        time.sleep(0.02)
    return {"elapsed": time.monotonic() - start, "longest_tick": longest, "ticks": ticks}


def call_operator(op: Any, **kwargs: Any) -> dict[str, Any]:
    """Run an operator; bpy raises RuntimeError when it reports an error: keep the text."""
    try:
        return {"result": sorted(op(**kwargs)), "error": ""}
    except RuntimeError as exc:
        return {"result": ["CANCELLED"], "error": str(exc)}


def _configure(prefs: Any, args: dict[str, Any]) -> None:
    for key in ("endpoint", "key_hex", "connection_file"):
        if key in args:
            setattr(prefs, key, args[key])
    for key in ("request_timeout_s", "heartbeat_interval_s", "lost_after_s", "poll_interval_s"):
        if key in args:
            setattr(prefs, key, args[key])


@scenario
def no_sidecar(args: dict[str, Any]) -> dict[str, Any]:
    connection = addon_module("connection")
    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    _configure(prefs, args)
    props = bpy.context.scene.edit3d
    bpy.context.preferences.system.use_online_access = False
    offline = call_operator(bpy.ops.edit3d.connect)
    offline_state = props.connection_state
    offline_socket = connection.LINK.client is not None
    bpy.context.preferences.system.use_online_access = True
    t0 = time.perf_counter()
    online = call_operator(bpy.ops.edit3d.connect)
    connect_call_s = time.perf_counter() - t0
    state_after_call = props.connection_state
    timer_registered = bpy.app.timers.is_registered(connection._timer)
    timing = _poll_until(
        connection, lambda: props.connection_state == "DISCONNECTED", args["limit_s"]
    )
    result = {
        "offline_result": offline["result"],
        "offline_error": offline["error"],
        "offline_state": offline_state,
        "offline_socket": offline_socket,
        "online_result": online["result"],
        "connect_call_s": connect_call_s,
        "state_after_call": state_after_call,
        "timer_registered_after_connect": timer_registered,
        "final_state": props.connection_state,
        "reports": [(r.level, r.message) for r in props.reports],
        **timing,
    }
    disable_addon()
    result["timer_registered_after_disable"] = bpy.app.timers.is_registered(connection._timer)
    return result


def main() -> int:
    name, args_path, result_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    args = json.loads(args_path.read_text())
    result = SCENARIOS[name](args)
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
