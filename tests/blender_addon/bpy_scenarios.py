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
        back = scene_io.camera_from_object(obj, scene)
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
        pin = scene_io.camera_from_object(obj, scene)
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


def _point_attribute(mesh: Any, name: str, key: str, width: int) -> list:
    attribute = mesh.attributes[name]
    values = np.empty(len(mesh.vertices) * width, dtype=np.float32)
    attribute.data.foreach_get(key, values)
    return values.reshape(len(mesh.vertices), width).tolist()


def _splat_instances(obj: Any) -> list[list[list[float]]]:
    """World matrices of the evaluated splat instances of `obj`."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return [
        [list(row) for row in instance.matrix_world]
        for instance in depsgraph.object_instances
        if instance.is_instance and instance.parent and instance.parent.original == obj
    ]


def _describe_splats(obj: Any) -> dict[str, Any]:
    mesh = obj.data
    modifier = obj.modifiers[0]
    return {
        "domains": sorted(
            {(a.name, a.domain, a.data_type) for a in mesh.attributes if a.name[0] != "."}
        ),
        "position": _point_attribute(mesh, "position", "vector", 3),
        "color": _point_attribute(mesh, "Color", "color", 4),
        "opacity": _point_attribute(mesh, "opacity", "value", 1),
        "scale": _point_attribute(mesh, "scale", "vector", 3),
        "rotation": _point_attribute(mesh, "rotation", "value", 4),
        "modifier": [modifier.type, modifier.node_group.name if modifier.node_group else None],
        "materials": [m.name for m in mesh.materials],
        "instances": _splat_instances(obj),
    }


@scenario
def splats(args: dict[str, Any]) -> dict[str, Any]:
    """A 3DGS PLY through File > Import, and the same splats arriving as a sidecar export."""
    enable_addon()
    scene = bpy.context.scene
    for obj in list(scene.objects):  # the start-up cube would hide the splats
        bpy.data.objects.remove(obj)
    menu = [f.__name__ for f in getattr(bpy.types.TOPBAR_MT_file_import.draw, "_draw_funcs", [])]
    outcome: dict[str, Any] = {"import_menu": "menu_entry" in menu}
    outcome["operator"] = sorted(bpy.ops.edit3d.import_splats(filepath=args["ply"], size=2.0))
    imported = bpy.data.objects[Path(args["ply"]).stem]
    outcome["file"] = _describe_splats(imported)
    outcome["refused"] = []
    for bad in (args["not_splats"], args["truncated"]):
        try:
            bpy.ops.edit3d.import_splats(filepath=bad)
            outcome["refused"].append(None)
        except RuntimeError as exc:  # an operator's ERROR report raises in the bpy module
            outcome["refused"].append(str(exc))
    camera = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(camera)
    camera.location = (0.0, 0.0, 4.0)  # looks down -Z at the splats
    scene.camera = camera
    render = scene.render
    render.engine = "CYCLES"
    render.resolution_x, render.resolution_y, render.resolution_percentage = 48, 32, 100
    render.film_transparent = True
    scene.cycles.samples, scene.cycles.device = 4, "CPU"
    outcome["render"] = _render_coverage(scene, Path(args["out_dir"]) / "splats.png")
    if args.get("export_result"):
        events, connection = addon_module("events"), addon_module("connection")
        result = connection.messages().ExportResult(**_arrays(args["export_result"]))
        events.HANDLERS["export.result"](bpy.context, result)
        name = f"Edit3D splats {result.turn_id}"
        outcome["sidecar"] = _describe_splats(bpy.data.objects[name])
        outcome["sidecar_collection"] = bpy.data.objects[name].users_collection[0].name
    disable_addon()
    return outcome


def _arrays(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON lists of numbers → float32 arrays (a message's array fields)."""
    return {k: np.asarray(v, dtype=np.float32) if isinstance(v, list) else v
            for k, v in fields.items()}  # fmt: skip


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
    status = bpy.context.window_manager.edit3d
    for key, value in state.items():
        if key == "turns":
            props.turns.clear()
            for turn in value:
                item = props.turns.add()
                for k, v in turn.items():
                    setattr(item, k, v)
        elif key == "images":
            for attr in ("preview_image", "before_image", "mask_image", "heatmap_image"):
                image = scene_io.image_to_datablock(attr, np.zeros((4, 4, 3), np.float32))
                setattr(props, attr, image if value else None)
        elif key == "sessions":
            status.sessions.clear()
            for session in value:
                item = status.sessions.add()
                for k, v in session.items():
                    setattr(item, k, v)
        elif key == "jobs":
            status.jobs.clear()
            for job in value:
                item = status.jobs.add()
                for k, v in job.items():
                    setattr(item, k, v)
        elif key == "reports":
            status.reports.clear()
            for level, message in value:
                item = status.reports.add()
                item.level, item.message = level, message
        else:
            setattr(status if hasattr(status, key) else props, key, value)


@scenario
def panels(args: dict[str, Any]) -> dict[str, Any]:
    addon = enable_addon()
    scene_io = sys.modules[f"{ADDON}.scene_io"]
    panel_classes = [c for c in addon.classes if c.__name__.startswith("VIEW3D_PT")]
    lists = {c.__name__: c for c in addon.classes if c.__name__.startswith("EDIT3D_UL")}
    list_items = (
        ("EDIT3D_UL_turns", "turns", "active_turn_index"),
        ("EDIT3D_UL_sessions", "sessions", "active_session_index"),
    )
    props, status = bpy.context.scene.edit3d, bpy.context.window_manager.edit3d
    outcomes = []
    for state in args["states"]:
        _set_state(props, scene_io, state)
        for cls in panel_classes:
            log: list[tuple[str, Any]] = []
            errors: list[str] = []
            try:
                cls.draw(_PanelSelf(RecordingLayout(log, errors)), bpy.context)
                for ul_name, collection, active in list_items:
                    ul = lists[ul_name]
                    data = props if hasattr(props, collection) else status
                    for index, item in enumerate(getattr(data, collection)):
                        ul.draw_item(
                            ul, bpy.context, RecordingLayout(log, errors), data, item, 0,
                            data, active, index,
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
def preference_durations(args: dict[str, Any]) -> dict[str, Any]:
    """The timing preferences as a fresh install shows them, beside the link's defaults."""
    connection = addon_module("connection")
    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    names = ("request_timeout_s", "heartbeat_interval_s", "lost_after_s", "poll_interval_s")
    defaults, settings = connection.LinkSettings(), connection.settings_from_preferences(prefs)
    rna = prefs.bl_rna.properties
    return {name: {
        "shown": getattr(prefs, name), "sent": getattr(settings, name),
        "link_default": getattr(defaults, name), "unit": rna[name].unit,
        "range": [rna[name].hard_min, rna[name].hard_max],
    } for name in names}  # fmt: skip


@scenario
def no_sidecar(args: dict[str, Any]) -> dict[str, Any]:
    connection = addon_module("connection")
    status = bpy.context.window_manager.edit3d
    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    _configure(prefs, args)
    bpy.context.preferences.system.use_online_access = False
    loopback, prefs.endpoint = prefs.endpoint, "tcp://192.0.2.10:5555"  # another machine
    offline = call_operator(bpy.ops.edit3d.connect)
    offline_state = status.connection_state
    offline_socket = connection.LINK.client is not None
    prefs.endpoint = loopback  # this machine: allowed with online access still off
    t0 = time.perf_counter()
    online = call_operator(bpy.ops.edit3d.connect)
    connect_call_s = time.perf_counter() - t0
    state_after_call = status.connection_state
    timer_registered = bpy.app.timers.is_registered(connection._timer)
    timing = _poll_until(
        connection, lambda: status.connection_state == "DISCONNECTED", args["limit_s"]
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
        "final_state": status.connection_state,
        "reports": [(r.level, r.message) for r in status.reports],
        **timing,
    }
    disable_addon()
    result["timer_registered_after_disable"] = bpy.app.timers.is_registered(connection._timer)
    return result


@scenario
def version_mismatch(args: dict[str, Any]) -> dict[str, Any]:
    """A server (the vendored protocol's own endpoint, in this process) of protocol 3.x."""
    connection = addon_module("connection")
    status = bpy.context.window_manager.edit3d
    proto = connection.protocol_module()
    key = bytes(range(32))
    server = proto.ServerEndpoint("tcp://127.0.0.1:0", key)
    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    _configure(prefs, {"endpoint": server.endpoint, "key_hex": key.hex()})
    bpy.context.preferences.system.use_online_access = True
    call_operator(bpy.ops.edit3d.connect)
    msgs = connection.messages()
    start = time.monotonic()
    while status.connection_state == "CONNECTING" and time.monotonic() - start < 10:
        incoming = server.recv(timeout_ms=10)
        if incoming is not None and isinstance(incoming.message, msgs.Handshake):
            reply = msgs.HandshakeReply(server_version=(3, 0), server_id="future", device="cpu")
            server.reply(incoming.identity, reply, parent_id=incoming.envelope.header.msg_id)
        connection.poll_once(bpy.context)
    result = {
        "state": status.connection_state,
        "ready": connection.is_ready(),
        "reports": [(r.level, r.message) for r in status.reports],
    }
    server.close()
    disable_addon()
    return result


class FakeSidecar:
    """The vendored protocol's server endpoint in this process: answers the handshake (and
    heartbeats with ``gpu_memory_free``), records every request, while polling the add-on."""

    def __init__(self, connection: Any, *, gpu_memory_free: int | None = None,
                 answers: dict[str, Callable[[Any], Any]] | None = None,
                 handshake: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.connection = connection
        self.proto = connection.protocol_module()
        self.msgs = connection.messages()
        self.server = self.proto.ServerEndpoint("tcp://127.0.0.1:0", bytes(range(32)))
        self.gpu_memory_free = gpu_memory_free
        self.answers = answers or {}
        """Replies to other requests, by request type name."""
        self.handshake = handshake or {}
        """Extra handshake reply fields (capabilities, weights_missing)."""
        self.identity = b""
        """The add-on's socket identity (to push events to it)."""
        self.seq = 0
        self.received: list[Any] = []

    def push(self, event: Any, session: str = "s1") -> None:
        self.seq += 1
        self.server.push_event([self.identity], event, session=session, seq=self.seq)

    def connect(self, **prefs_values: Any) -> None:
        prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
        _configure(prefs, {"endpoint": self.server.endpoint, "key_hex": bytes(range(32)).hex()})
        _configure(prefs, prefs_values)
        bpy.context.preferences.system.use_online_access = True
        call_operator(bpy.ops.edit3d.connect)

    def serve(self, limit_s: float, until: Callable[[], bool] | None = None) -> None:
        end = time.monotonic() + limit_s
        while time.monotonic() < end and not (until is not None and until()):
            incoming = self.server.recv(timeout_ms=5)
            if incoming is not None:
                self.identity = incoming.identity
                self.received.append(incoming.message)
                reply = self._reply(incoming.message)
                if reply is not None:
                    parent = incoming.envelope.header.msg_id
                    self.server.reply(incoming.identity, reply, parent_id=parent)
            self.connection.poll_once(bpy.context)

    def _reply(self, message: Any) -> Any:
        msgs = self.msgs
        if isinstance(message, msgs.Handshake):
            return msgs.HandshakeReply(
                server_version=tuple(self.proto.PROTOCOL_VERSION), server_id="s",
                device="cuda:0", gpu_name="H100", gpu_memory_total=80 * 2**30,
                gpu_memory_free=70 * 2**30, **self.handshake,
            )  # fmt: skip
        if isinstance(message, msgs.Heartbeat):
            return msgs.HeartbeatReply(
                server_time=time.time(), gpu_memory_free=self.gpu_memory_free
            )
        answer = self.answers.get(message.type_name)
        return None if answer is None else answer(message)

    def close(self) -> None:
        self.server.close()


@scenario
def editor_defaults(args: dict[str, Any]) -> dict[str, Any]:
    """The handshake's editor defaults become the starting values of settings not
    overridden; overridden ones keep what the user set."""
    connection = addon_module("connection")
    msgs = connection.messages()
    editor = bpy.context.scene.edit3d.editor
    editor.use_diffusion_steps, editor.diffusion_steps = True, 5
    defaults = msgs.EditorSettings(guidance_scale=6.0, image_guidance_scale=1.25,
                                   diffusion_steps=30, lower_bound=0.1, upper_bound=0.9)
    fake = FakeSidecar(connection, handshake={"editor_defaults": defaults})
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    values = addon_module("edit_preview").editor_values(editor)
    fake.close()
    disable_addon()
    return values


@scenario
def refused_fields(args: dict[str, Any]) -> dict[str, Any]:
    """Values the protocol refuses are reported by the operator and never sent."""
    connection = addon_module("connection")
    status = bpy.context.window_manager.edit3d
    fake = FakeSidecar(connection)
    fake.connect()
    props = bpy.context.scene.edit3d
    fake.serve(1.0)
    ready = connection.is_ready()
    props.session_id = "s1"
    props.instruction = "x" * 2500
    long_instruction = call_operator(bpy.ops.edit3d.run_turn)
    props.instruction = "make it red"
    props.edit_queries = ",".join(f"q{i}" for i in range(40))
    many_queries = call_operator(bpy.ops.edit3d.run_turn)
    fake.serve(0.5)
    result = {
        "ready": ready,
        "long_instruction": long_instruction,
        "many_queries": many_queries,
        "received": [m.type_name for m in fake.received],
        "job_state": status.job_state,
    }
    fake.close()
    disable_addon()
    return result


def _training_requests(fake: FakeSidecar) -> dict[str, Any]:
    """Send train-base, run-turn and resume-turn; what each request carried for previews."""
    props = bpy.context.scene.edit3d
    props.instruction = "make it red"
    props.turns.clear()
    turn = props.turns.add()
    turn.turn_id, turn.kind, turn.status = "t1", "edit", "interrupted"
    props.active_turn_index = 0
    start = len(fake.received)
    for op in (bpy.ops.edit3d.train_base, bpy.ops.edit3d.run_turn, bpy.ops.edit3d.resume_turn):
        call_operator(op)

    def jobs() -> list[Any]:
        return [m for m in fake.received[start:] if m.type_name.startswith("job.")]

    fake.serve(2.0, until=lambda: len(jobs()) >= 3)
    sent = {}
    for message in jobs():
        camera = message.preview_camera
        sent[message.type_name] = {
            "preview_every": message.preview_every,
            "camera": None if camera is None else {
                "c2w": camera.c2w.tolist(), "width": camera.width, "height": camera.height,
            },
        }  # fmt: skip
    return sent


@scenario
def job_requests(args: dict[str, Any]) -> dict[str, Any]:
    """Training jobs carry the scene camera for live previews; heartbeats update free memory."""
    connection = addon_module("connection")
    status = bpy.context.window_manager.edit3d
    addon = enable_addon()
    fake = FakeSidecar(connection, gpu_memory_free=12 * 2**30)
    fake.connect(heartbeat_interval_s=0.2)
    props = bpy.context.scene.edit3d
    fake.serve(2.0, until=connection.is_ready)
    free_after_handshake = status.gpu_memory_free_gb
    props.session_id = "s1"
    scene = bpy.context.scene
    camera = bpy.data.objects.new("PreviewCam", bpy.data.cameras.new("PreviewCam"))
    scene.collection.objects.link(camera)
    camera.location = (1.0, -2.0, 3.0)
    scene.camera = camera
    bpy.context.view_layer.update()
    expected_c2w = [list(row) for row in camera.matrix_world]
    props.live_preview = True
    live_on = _training_requests(fake)
    props.live_preview = False
    live_off = _training_requests(fake)
    fake.serve(3.0, until=lambda: abs(status.gpu_memory_free_gb - 12.0) < 1e-6)
    panel = next(c for c in addon.classes if c.__name__ == "VIEW3D_PT_edit3d_connection")
    log: list[tuple[str, Any]] = []
    errors: list[str] = []
    panel.draw(_PanelSelf(RecordingLayout(log, errors)), bpy.context)
    result = {
        "free_after_handshake": free_after_handshake,
        "free_after_heartbeat": status.gpu_memory_free_gb,
        "heartbeats": sum(m.type_name == "heartbeat" for m in fake.received),
        "live_on": live_on,
        "live_off": live_off,
        "expected_c2w": expected_c2w,
        "render_size": [scene.render.resolution_x, scene.render.resolution_y],
        "panel_labels": [entry[1] for entry in log if entry[0] == "label"],
        "panel_errors": errors,
    }
    fake.close()
    disable_addon()
    return result


@scenario
def preset_and_queries(args: dict[str, Any]) -> dict[str, Any]:
    """Unset steps are not sent (the preset decides); an opened session shows its own preset
    and its turns' queries as the lists they are."""
    connection = addon_module("connection")
    msgs = connection.messages()
    jobs = iter(range(1, 1000))

    def accepted(message: Any) -> Any:
        return msgs.JobAccepted(job_id=f"j{next(jobs)}", kind=message.type_name,
                                queue_position=0)  # fmt: skip

    def summary(message: Any) -> Any:
        turn = msgs.TurnInfo(turn_id="t1", parent="base", kind="edit", status="finished",
                             created_ts=1.0, edit_queries=("hat, brim", "scarf"),
                             keep_queries=("face",))  # fmt: skip
        return msgs.SessionSummary(session_id=message.session_id, name="garden",
                                   preset="paper", head="t1", turns=(turn,))  # fmt: skip

    answers = {"job.train_base": accepted, "job.run_turn": accepted, "session.open": summary}
    fake = FakeSidecar(connection, answers=answers)
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    props = bpy.context.scene.edit3d
    props.session_id, props.instruction = "s1", "make it red"

    def steps_sent() -> dict[str, Any]:
        start = len(fake.received)
        call_operator(bpy.ops.edit3d.train_base)
        call_operator(bpy.ops.edit3d.run_turn)
        fake.serve(2.0, until=lambda: sum(
            m.type_name.startswith("job.") for m in fake.received[start:]) >= 2)  # fmt: skip
        return {m.type_name: m.steps for m in fake.received[start:]
                if m.type_name.startswith("job.")}  # fmt: skip

    defaults = steps_sent()
    props.base_steps, props.turn_steps, props.update = 123, 45, "rounds"
    chosen = steps_sent()
    updates = [m.update for m in fake.received if m.type_name == "job.run_turn"]
    props.preset = "small"
    call_operator(bpy.ops.edit3d.open_session, session_id="s1")
    fake.serve(2.0, until=lambda: len(props.turns) == 1)
    result = {
        "defaults": defaults,
        "chosen": chosen,
        "updates": updates,
        "preset_after_open": props.preset,
        "turn_queries": [props.turns[0].edit_queries, props.turns[0].keep_queries]
        if len(props.turns) else None,
    }
    fake.close()
    disable_addon()
    return result


@scenario
def backend_choice(args: dict[str, Any]) -> dict[str, Any]:
    """The Backend enum reaches session.create only when chosen (never for a nerfstudio run);
    the open session's backend shows in the Scene panel."""
    connection, panels = addon_module("connection"), addon_module("panels")
    msgs = connection.messages()
    created: list[Any] = []

    def create(message: Any) -> Any:
        created.append(message.backend)
        return msgs.SessionSummary(session_id=f"s{len(created)}", name=message.name,
                                   preset=message.preset or "small",
                                   backend=message.backend)  # fmt: skip

    def summary(message: Any) -> Any:
        return msgs.SessionSummary(session_id=message.session_id, name="garden", preset="small",
                                   backend=created[-1] if created else None)  # fmt: skip

    fake = FakeSidecar(connection, answers={"session.create": create, "session.open": summary})
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    props, status = bpy.context.scene.edit3d, bpy.context.window_manager.edit3d
    shown: dict[str, Any] = {}

    def create_with(source: str, backend: str, **paths: str) -> None:
        props.source, props.backend = source, backend
        for key, value in paths.items():
            setattr(props, key, value)
        count = len(created)
        call_operator(bpy.ops.edit3d.create_session)
        fake.serve(2.0, until=lambda: len(created) > count and status.session_label == "garden")
        log: list[tuple[str, Any]] = []
        panels.VIEW3D_PT_edit3d_scene.draw(_PanelSelf(RecordingLayout(log, [])), bpy.context)
        shown[f"{source}/{backend}"] = {
            "open_label": next((t for k, t in log if k == "label" and t.startswith("Open:")), ""),
            "backend_prop_drawn": ("prop", "backend") in log,
            "session_backend": status.session_backend,
        }
        status.session_label = ""

    create_with("DATASET", "DEFAULT", dataset_path="/data/garden")
    create_with("DATASET", "splatfacto")
    create_with("NERFSTUDIO_RUN", "nerfacto", nerfstudio_run="/runs/garden/config.yml")
    fake.close()
    disable_addon()
    return {"sent": created, "shown": shown}


@scenario
def save_nerfstudio_run(args: dict[str, Any]) -> dict[str, Any]:
    """Export as a nerfstudio run: sent without arrays even from "Into Scene", reported as a
    run folder on the sidecar."""
    connection = addon_module("connection")
    msgs = connection.messages()

    def accepted(message: Any) -> Any:
        return msgs.JobAccepted(job_id="j1", kind=message.type_name, queue_position=0)

    fake = FakeSidecar(connection, answers={"job.export": accepted})
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    props = bpy.context.scene.edit3d
    props.session_id, props.export_kind = "s1", "nerfstudio_run"
    call_operator(bpy.ops.edit3d.export, into_scene=True)
    fake.serve(2.0, until=lambda: any(m.type_name == "job.export" for m in fake.received))
    sent = [(m.kind, m.return_arrays) for m in fake.received if m.type_name == "job.export"]
    path = "exports/nerfstudio_run-base-j1/edit3d/nerfacto/base/config.yml"
    result = msgs.ExportResult(job_id="j1", turn_id="base", kind="nerfstudio_run",
                               format="yml", path=path)  # fmt: skip
    sys.modules[f"{ADDON}.events"]._on_export_result(bpy.context, result)
    reports = [r.message for r in bpy.context.window_manager.edit3d.reports]
    fake.close()
    disable_addon()
    return {"sent": sent, "reports": reports}


def _weights_panel_lines(connection_panel: Any) -> list[str]:
    log: list[tuple[str, Any]] = []
    connection_panel.draw(_PanelSelf(RecordingLayout(log, [])), bpy.context)
    return [text for kind, text in log if kind == "label" and "weights" in text.lower()]


@scenario
def missing_weights(args: dict[str, Any]) -> dict[str, Any]:
    """A sidecar lacking weights: the panel lists them and jobs needing them are not sent;
    jobs needing none are; a tiny-profile sidecar needs none."""
    addon = enable_addon()
    panel = next(c for c in addon.classes if c.__name__ == "VIEW3D_PT_edit3d_connection")
    connection = addon_module("connection")
    msgs = connection.messages()
    jobs = iter(range(1, 1000))

    def accepted(message: Any) -> Any:
        return msgs.JobAccepted(job_id=f"j{next(jobs)}", kind=message.type_name,
                                queue_position=0)  # fmt: skip

    answers = {"job.run_turn": accepted, "job.refine": accepted}
    props = bpy.context.scene.edit3d
    outcome: dict[str, Any] = {}
    for label, handshake in args["sidecars"].items():
        fake = FakeSidecar(connection, answers=answers, handshake=handshake)
        fake.connect()
        fake.serve(2.0, until=connection.is_ready)
        props.session_id, props.instruction = "s1", "make the shirt red"
        attempts = {}
        for name, queries in (("turn_without_queries", ""), ("turn_with_queries", "shirt")):
            props.edit_queries = queries
            attempts[name] = call_operator(bpy.ops.edit3d.run_turn)
        attempts["refine"] = call_operator(bpy.ops.edit3d.refine)
        fake.serve(1.0)
        outcome[label] = {
            "panel": _weights_panel_lines(panel),
            "attempts": attempts,
            "sent": [m.type_name for m in fake.received if m.type_name.startswith("job.")],
        }
        connection.close_client()
        fake.close()
    disable_addon()
    return outcome


def _render_coverage(scene: Any, path: Path) -> dict[str, Any]:
    """Render the scene to a PNG with a transparent film; share of covered pixels, mean colour."""
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    rgba = np.array(image.pixels[:], dtype=np.float32).reshape(-1, 4)
    bpy.data.images.remove(image)
    covered = rgba[:, 3] > 0.5
    mean = rgba[covered, :3].mean(axis=0).tolist() if covered.any() else [0.0, 0.0, 0.0]
    return {"coverage": float(covered.mean()), "mean_rgb": mean}


@scenario
def visible_results(args: dict[str, Any]) -> dict[str, Any]:
    """A red point cloud and a green mesh, each rendered alone by Cycles from one camera."""
    scene_io = addon_module("scene_io")
    scene = bpy.context.scene
    for obj in list(scene.objects):  # the start-up cube would hide the plate
        bpy.data.objects.remove(obj)
    coll = scene_io.ensure_collection(scene, "results")
    rng = np.random.default_rng(0)
    grid = rng.random((4000, 2), dtype=np.float32) * 2.0 - 1.0
    points = np.column_stack([grid, np.zeros(len(grid), np.float32)])  # a plate at z = 0
    red = np.tile(np.array([[220, 30, 30]], np.uint8), (len(points), 1))
    cloud = scene_io.point_cloud_object("cloud", points, red, coll)
    verts = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    mesh = scene_io.mesh_object("plate", verts, faces, np.tile([[0.1, 0.8, 0.1]], (4, 1)), coll)
    camera = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(camera)
    camera.location = (0.0, 0.0, 4.0)  # looks down -Z at the plate
    scene.camera = camera
    render = scene.render
    render.engine = args.get("engine", "CYCLES")
    render.resolution_x, render.resolution_y, render.resolution_percentage = 48, 32, 100
    render.film_transparent = True
    if render.engine == "CYCLES":
        scene.cycles.samples, scene.cycles.device = 4, "CPU"
    out_dir = Path(args["out_dir"])
    results = {}
    for shown, hidden in ((cloud, mesh), (mesh, cloud)):
        hidden.hide_render, shown.hide_render = True, False
        results[shown.name] = _render_coverage(scene, out_dir / f"{shown.name}.png")
    modifier = cloud.modifiers[0]
    return {
        **results,
        "modifier": [modifier.type, modifier.node_group.name],
        "cloud_material": [m.name for m in cloud.data.materials],
        "mesh_material": [m.name for m in mesh.data.materials],
    }


class _ConfirmRecorder:
    """A window manager stand-in that records invoke_confirm calls instead of showing one."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def invoke_confirm(self, _op: Any, _event: Any, **kwargs: Any) -> set[str]:
        self.asked.append(kwargs)
        return {"RUNNING_MODAL"}


@scenario
def undo_and_confirm(args: dict[str, Any]) -> dict[str, Any]:
    """Scene-changing operators make undo steps, and so do objects a poll step imports;
    destructive operators ask first."""
    connection = addon_module("connection")
    msgs = connection.messages()
    options = {
        name: sorted(getattr(bpy.types, name).bl_options)
        for name in ("EDIT3D_OT_import_cameras", "EDIT3D_OT_import_transforms")
    }
    recorder = _ConfirmRecorder()
    context = type("Ctx", (), {"window_manager": recorder})()
    invoked = bpy.types.EDIT3D_OT_discard_turn.invoke(None, context, None)
    bpy.ops.ed.undo_push(message="before the import")
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    result = msgs.ExportResult(job_id="j1", kind="mesh", format="ply", path="exports/m.ply",
                               points=verts, faces=np.array([[0, 1, 2]], np.int32))  # fmt: skip
    sys.modules[f"{ADDON}.events"]._on_export_result(bpy.context, result)
    name = "Edit3D mesh head"
    imported = name in bpy.data.objects
    if bpy.ops.ed.undo.poll():  # False when the import made no step of its own
        bpy.ops.ed.undo()
    after_undo = name in bpy.data.objects
    if bpy.ops.ed.redo.poll():
        bpy.ops.ed.redo()
    after_redo = name in bpy.data.objects
    reports = [r.message for r in bpy.context.window_manager.edit3d.reports]
    disable_addon()
    return {
        "options": options,
        "confirm_result": sorted(invoked),
        "confirm_asked": recorder.asked,
        "imported": imported,
        "after_undo": after_undo,
        "after_redo": after_redo,
        "reports": reports,
    }


def _connection_file_errors(tmp: Path) -> dict[str, Any]:
    """Connect with a folder, a file without a key, and a dead sidecar's file."""
    import subprocess

    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    no_key = tmp / "no-key.json"
    no_key.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:5555"}))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid is free now: the file below is a stale one
    stale = tmp / "stale.json"
    stale.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:5555", "key": "ab" * 32,
                                 "pid": gone.pid}))  # fmt: skip
    for path in (no_key, stale):
        path.chmod(0o600)
    out = {}
    for name, path in (("folder", tmp), ("no_key", no_key), ("stale", stale)):
        prefs.connection_file = str(path)
        t0 = time.perf_counter()
        out[name] = {**call_operator(bpy.ops.edit3d.connect), "s": time.perf_counter() - t0}
    prefs.connection_file = ""
    return out


@scenario
def honest_state(args: dict[str, Any]) -> dict[str, Any]:
    """What the panel says matches what is true: after re-enabling, after a job without a
    loss, with a session open; connection-file problems are named; runtime is not saved."""
    connection = addon_module("connection")
    msgs = connection.messages()

    def summary(message: Any) -> Any:
        return msgs.SessionSummary(session_id=message.session_id, name="garden", preset="small")

    def created(message: Any) -> Any:
        return msgs.SessionSummary(session_id="s2", name=message.name, preset="small")

    def accepted(message: Any) -> Any:
        return msgs.JobAccepted(job_id="j1", kind=message.type_name, queue_position=0)

    fake = FakeSidecar(connection, answers={"session.open": summary, "session.create": created,
                                            "job.render": accepted})  # fmt: skip
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    props, status = bpy.context.scene.edit3d, bpy.context.window_manager.edit3d
    props.session_name = "next scene"
    call_operator(bpy.ops.edit3d.open_session, session_id="s1")
    fake.serve(2.0, until=lambda: status.session_label == "garden")
    naming = {"label": status.session_label, "name_field": props.session_name}
    props.source, props.dataset_path = "DATASET", "/data/scene"
    call_operator(bpy.ops.edit3d.create_session)
    fake.serve(2.0, until=lambda: props.session_id == "s2")
    naming["create_sent"] = [m.name for m in fake.received if m.type_name == "session.create"]

    status.loss = 0.25  # what a finished turn left
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.scene.camera = camera
    call_operator(bpy.ops.edit3d.render_camera)
    fake.serve(1.0, until=lambda: status.job_id == "j1")
    loss_during_render = status.loss

    connected_before = status.connection_state
    disable_addon()
    enable_addon()
    status = bpy.context.window_manager.edit3d
    after_reenable = {
        "state": status.connection_state,
        "connect_enabled": bpy.ops.edit3d.connect.poll(),
        "create_enabled": bpy.ops.edit3d.create_session.poll(),
    }
    local_sidecar = sys.modules[f"{ADDON}.local_sidecar"]
    command = local_sidecar.command("py", Path("/w"), device="auto", tiny=False)
    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    result = {
        "naming": naming,
        "loss_during_render": loss_during_render,
        "connected_before": connected_before,
        "after_reenable": after_reenable,
        "device_default": prefs.sidecar_device,
        "auto_command": command,
        "cpu_command": local_sidecar.command("py", Path("/w"), device="cpu", tiny=True),
        "file_errors": _connection_file_errors(Path(args["tmp"])),
        "runtime_on_scene": [
            name for name in ("connection_state", "job_state", "reports")
            if hasattr(bpy.context.scene.edit3d, name)
        ],
    }
    fake.close()
    disable_addon()
    return result


@scenario
def download_export(args: dict[str, Any]) -> dict[str, Any]:
    """An export on the sidecar reaches a local folder in chunks, resumes, and a wrong
    partial file is caught by the checksum."""
    import hashlib

    connection = addon_module("connection")
    download = sys.modules[f"{ADDON}.download"]
    download.CHUNK_BYTES = 1000
    msgs = connection.messages()
    remote = np.random.default_rng(0).integers(0, 256, 4500, dtype=np.uint8).tobytes()
    offsets: list[int] = []

    def chunk(message: Any) -> Any:
        offsets.append(message.offset)
        data = remote[message.offset:message.offset + message.length]
        return msgs.DownloadData(path=message.path, offset=message.offset, size=len(remote),
                                 sha256=hashlib.sha256(remote).hexdigest(),
                                 data=np.frombuffer(data, np.uint8))  # fmt: skip

    fake = FakeSidecar(connection, answers={"download.chunk": chunk})
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    props, status = bpy.context.scene.edit3d, bpy.context.window_manager.edit3d
    props.session_id = "s1"
    folder = Path(args["folder"])
    props.export_save_path = str(folder)
    target = folder / "cloud.ply"
    out: dict[str, Any] = {"no_export": call_operator(bpy.ops.edit3d.download_export)}
    connection.LINK.export_results.append(msgs.ExportResult(
        job_id="j1", kind="point_cloud", format="ply", path="exports/cloud.ply"))  # fmt: skip

    def run(label: str) -> None:
        offsets.clear()
        call_operator(bpy.ops.edit3d.download_export)
        fake.serve(5.0, until=lambda: status.job_state != "RUNNING")
        out[label] = {
            "state": status.job_state, "message": status.job_message, "offsets": list(offsets),
            "same_bytes": target.is_file() and target.read_bytes() == remote,
            "part_left": target.with_name("cloud.ply.part").exists(),
        }  # fmt: skip

    run("fresh")
    target.unlink()
    target.with_name("cloud.ply.part").write_bytes(remote[:2500])  # a stopped download
    run("resumed")
    target.unlink()
    target.with_name("cloud.ply.part").write_bytes(b"x" * 2500)  # another file's bytes
    run("corrupt")
    out["errors"] = [r.message for r in status.reports if r.level == "ERROR"]
    fake.close()
    disable_addon()
    return out


@scenario
def job_list(args: dict[str, Any]) -> dict[str, Any]:
    """Every job of the open session is listed and cancellable; a job started elsewhere is
    followed on opening; a second turn queues on top of the first; user renders go first."""
    connection = addon_module("connection")
    msgs = connection.messages()
    jobs = iter(range(1, 100))

    def accepted(message: Any) -> Any:
        return msgs.JobAccepted(job_id=f"j{next(jobs)}", kind=message.type_name,
                                queue_position=1)  # fmt: skip

    def elsewhere(message: Any) -> Any:  # a base training another Blender started
        job = msgs.JobInfo(job_id="j0", session_id="s1", kind="job.train_base", state="running",
                           queue_position=0, step=40, total=100, submitted_ts=1.0)  # fmt: skip
        return msgs.JobStateReply(jobs=(job,))

    def summary(message: Any) -> Any:
        return msgs.SessionSummary(session_id=message.session_id, name="garden", preset="small",
                                   last_seq=0)  # fmt: skip

    fake = FakeSidecar(connection, answers={
        "session.open": summary, "job.status": elsewhere, "job.run_turn": accepted,
        "job.render": accepted, "job.cancel": lambda m: msgs.Ok()})  # fmt: skip
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    props, status = bpy.context.scene.edit3d, bpy.context.window_manager.edit3d
    call_operator(bpy.ops.edit3d.open_session, session_id="s1")
    fake.serve(2.0, until=lambda: len(status.jobs) == 1)
    attached = {"rows": [(r.job_id, r.kind, r.state, r.step) for r in status.jobs],
                "current": [status.job_id, status.job_state, status.step]}  # fmt: skip
    fake.push(msgs.JobProgress(job_id="j0", step=60, total=100, eta_s=30.0, fraction=0.6,
                               phase="train_base"))  # fmt: skip
    fake.serve(1.0, until=lambda: status.jobs[0].step == 60)
    attached["after_progress"] = [status.jobs[0].step, status.jobs[0].eta_s, status.progress]

    props.instruction = "make it red"
    turns = []
    for _ in range(2):
        start = len(fake.received)
        turns.append(call_operator(bpy.ops.edit3d.run_turn))
        fake.serve(1.0, until=lambda s=start: any(
            m.type_name == "job.run_turn" for m in fake.received[s:]) and status.jobs[-1].job_id
            != "j0" and len(status.jobs) == len(turns) + 1)  # fmt: skip
    sent = [(m.parent_turn, m.after_job) for m in fake.received if m.type_name == "job.run_turn"]
    call_operator(bpy.ops.edit3d.cancel_job, job_id="j1")
    fake.serve(1.0, until=lambda: any(m.type_name == "job.cancel" for m in fake.received))
    cancelled = [m.job_id for m in fake.received if m.type_name == "job.cancel"]

    # a live-preview render queued behind j0 is cancelled when the user asks for a render
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.scene.camera = camera
    events = sys.modules[f"{ADDON}.events"]
    events.render_camera(bpy.context, camera, silent=True)
    fake.serve(1.0, until=lambda: len(status.jobs) == 4)
    live_id = status.jobs[-1].job_id
    call_operator(bpy.ops.edit3d.render_camera)
    fake.serve(1.0, until=lambda: live_id in [m.job_id for m in fake.received
                                              if m.type_name == "job.cancel"])  # fmt: skip
    fake.push(msgs.JobFinished(job_id="j0", kind="job.train_base"))
    fake.serve(1.0, until=lambda: status.jobs[0].state == "finished")

    addon = enable_addon()
    panel = next(c for c in addon.classes if c.__name__ == "VIEW3D_PT_edit3d_jobs")
    log: list[tuple[str, Any]] = []
    errors: list[str] = []
    panel.draw(_PanelSelf(RecordingLayout(log, errors)), bpy.context)
    result = {
        "attached": attached,
        "turn_reports": turns,
        "sent": sent,
        "cancelled": [m.job_id for m in fake.received if m.type_name == "job.cancel"],
        "cancel_first": cancelled,
        "live_id": live_id,
        "rows": [(r.job_id, r.kind, r.state) for r in status.jobs],
        "panel_log": [list(map(str, entry)) for entry in log],
        "panel_errors": errors,
    }
    fake.close()
    disable_addon()
    return result


def _panel_bars(panel_class_name: str) -> list[list[Any]]:
    """The progress bars a panel draws now: [factor, text] each."""
    return [entry[1] for entry in _panel_log(panel_class_name, raw=True)["log"]
            if entry[0] == "progress"]  # fmt: skip


def _turn_bar(fake: FakeSidecar, msgs: Any, status: Any) -> list[dict[str, Any]]:
    """Push a turn's phase events (as the sidecar sends them) and record the panel's bar."""
    seen = []
    stream = [("prerender", 1, 4, 0.05, None), ("prerender", 4, 4, 0.2, None),
              ("masks", 2, 4, 0.4, None), ("turn", 10, 100, 0.6, 0.3),
              ("turn", 90, 100, 0.9, 0.2), ("turn", 100, 100, 1.0, None)]  # fmt: skip
    for phase, step, total, fraction, loss in stream:
        fake.push(msgs.JobProgress(job_id="j1", step=step, total=total, fraction=fraction,
                                   phase=phase, loss=loss, eta_s=10.0 * (1 - fraction)))
        fake.serve(1.0, until=lambda f=fraction, p=phase, s=step: (
            status.progress == f and status.phase == p and status.step == s))  # fmt: skip
        seen.append({"progress": status.progress, "phase": status.phase, "loss": status.loss,
                     "eta_s": status.eta_s, "bars": _panel_bars("VIEW3D_PT_edit3d_turns")})
    return seen


@scenario
def edit_preview(args: dict[str, Any]) -> dict[str, Any]:
    """A turn's one bar in the panel; Preview Edit on a new camera with the Editor box's
    overrides; its before | mask | after image; Use These Settings; the turn sends them."""
    connection = addon_module("connection")
    msgs = connection.messages()
    scene_io = addon_module("scene_io")
    jobs = iter(range(1, 100))

    def accepted(message: Any) -> Any:
        return msgs.JobAccepted(job_id=f"j{next(jobs)}", kind=message.type_name,
                                queue_position=0)  # fmt: skip

    def summary(message: Any) -> Any:
        return msgs.SessionSummary(session_id=message.session_id, name="garden", preset="small",
                                   last_seq=0)  # fmt: skip

    fake = FakeSidecar(connection, answers={"session.open": summary, "job.run_turn": accepted,
                                            "job.preview_edit": accepted})  # fmt: skip
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    props, status = bpy.context.scene.edit3d, bpy.context.window_manager.edit3d
    call_operator(bpy.ops.edit3d.open_session, session_id="s1")
    fake.serve(2.0, until=lambda: status.session_label == "garden")
    props.instruction, props.seed = "make it red", 5
    call_operator(bpy.ops.edit3d.run_turn)
    fake.serve(2.0, until=lambda: status.job_id == "j1")
    bar = _turn_bar(fake, msgs, status)
    fake.push(msgs.JobFinished(job_id="j1", kind="job.run_turn"))
    fake.serve(1.0, until=lambda: status.job_state == "FINISHED")

    camera = bpy.data.objects.new("New Cam", bpy.data.cameras.new("New Cam"))
    bpy.context.scene.collection.objects.link(camera)
    camera.location = (1.0, -3.0, 0.5)
    bpy.context.scene.camera = camera
    bpy.context.scene.render.resolution_x, bpy.context.scene.render.resolution_y = 40, 30
    bpy.context.scene.render.resolution_percentage = 100
    editor = props.editor
    editor.use_guidance_scale, editor.guidance_scale = True, 6.0
    editor.use_diffusion_steps, editor.diffusion_steps = True, 3
    props.preview_seeds = 2
    pressed = call_operator(bpy.ops.edit3d.preview_edit)
    fake.serve(2.0, until=lambda: status.job_id == "j2")
    sent = next(m for m in fake.received if m.type_name == "job.preview_edit")
    expected_camera = scene_io.camera_from_object(camera, bpy.context.scene)

    rng = np.random.default_rng(7)
    before = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), np.float32)
    mask[:, 20:] = 1.0
    after = rng.integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    fake.push(msgs.EditPreviewResult(job_id="j2", view_name="New Cam", seeds=(5, 6),
                                     before=before, mask=mask, after=after))  # fmt: skip
    fake.push(msgs.JobFinished(job_id="j2", kind="job.preview_edit"))
    fake.serve(2.0, until=lambda: props.edit_preview_image is not None
               and status.job_state == "FINISHED")  # fmt: skip
    image = props.edit_preview_image
    pixels = scene_io.datablock_to_image(image)[..., :3]

    props.seed, editor.guidance_scale, editor.use_diffusion_steps = 99, 1.0, False
    status.preview_choice = 2
    used = call_operator(bpy.ops.edit3d.use_preview_settings)
    after_use = {"seed": props.seed, "guidance_scale": editor.guidance_scale,
                 "use_guidance_scale": editor.use_guidance_scale,
                 "use_diffusion_steps": editor.use_diffusion_steps,
                 "diffusion_steps": editor.diffusion_steps}  # fmt: skip
    call_operator(bpy.ops.edit3d.run_turn)
    fake.serve(2.0, until=lambda: len([m for m in fake.received
                                       if m.type_name == "job.run_turn"]) == 2)  # fmt: skip
    turns = [m for m in fake.received if m.type_name == "job.run_turn"]
    sent_fields = {
        "width": sent.camera.width, "height": sent.camera.height,
        "c2w_error": float(np.abs(sent.camera.c2w - expected_camera.c2w).max()),
        "seed": sent.seed, "seeds": sent.seeds, "instruction": sent.instruction,
        "settings": sent.editor_settings.given(),
    }  # fmt: skip
    shown = {"name": image.name, "size": list(image.size), "in_data": image.name in bpy.data.images}
    arrays = {"before": before.tolist(), "mask": mask.tolist(), "after": after.tolist()}
    props.show_editor = True
    turn_settings = [None if m.editor_settings is None else m.editor_settings.given()
                     for m in turns]  # fmt: skip
    result = {
        "bar": bar,
        "after_preview_loss": status.loss,
        "pressed": pressed,
        "sent": sent_fields,
        "image": shown,
        "pixels": pixels.tolist(),
        "sent_arrays": arrays,
        "used": used,
        "after_use": after_use,
        "turn_settings": turn_settings,
        "turn_seeds": [m.seed for m in turns],
        "turns_panel": _panel_log("VIEW3D_PT_edit3d_turns"),
    }
    fake.close()
    disable_addon()
    return result


def _panel_log(panel_class_name: str, *, raw: bool = False) -> dict[str, Any]:
    """What a panel draws now (entries as strings unless raw) and the layout's errors."""
    addon = enable_addon()
    panel = next(c for c in addon.classes if c.__name__ == panel_class_name)
    log: list[tuple[str, Any]] = []
    errors: list[str] = []
    panel.draw(_PanelSelf(RecordingLayout(log, errors)), bpy.context)
    entries = log if raw else [list(map(str, entry)) for entry in log]
    return {"log": entries, "errors": errors}


@scenario
def before_after(args: dict[str, Any]) -> dict[str, Any]:
    """Render Active Camera renders the head and its parent turn, into two images."""
    connection = addon_module("connection")
    msgs = connection.messages()
    jobs = iter(range(1, 100))

    def accepted(message: Any) -> Any:
        return msgs.JobAccepted(job_id=f"r{next(jobs)}", kind=message.type_name,
                                queue_position=0)  # fmt: skip

    fake = FakeSidecar(connection, answers={"job.render": accepted})
    fake.connect()
    fake.serve(2.0, until=connection.is_ready)
    props = bpy.context.scene.edit3d
    props.session_id, props.head = "s1", "t2"
    for turn_id, parent in (("base", ""), ("t1", "base"), ("t2", "t1")):
        item = props.turns.add()
        item.turn_id, item.parent, item.kind, item.status = turn_id, parent, "edit", "finished"
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.scene.camera = camera
    call_operator(bpy.ops.edit3d.render_camera)
    renders = lambda: [m for m in fake.received if m.type_name == "job.render"]  # noqa: E731
    fake.serve(2.0, until=lambda: len(renders()) == 2 and "r2" in connection.LINK.jobs)
    colours = {"r1": (255, 0, 0), "r2": (0, 0, 255)}  # r1 = the first request
    for job_id, colour in colours.items():
        rgb = np.zeros((4, 6, 3), np.uint8)
        rgb[:] = colour
        cam = renders()[0].camera
        fake.push(msgs.RenderResult(job_id=job_id, camera=cam, rgb=rgb))
    fake.serve(1.0, until=lambda: props.before_image is not None
               and props.preview_image is not None)  # fmt: skip

    def first_pixel(image: Any) -> list[float]:
        return [round(v, 3) for v in list(image.pixels[:3])] if image is not None else []

    result = {
        "turns_asked": [m.turn_id for m in renders()],
        "before": [getattr(props.before_image, "name", ""), first_pixel(props.before_image)],
        "after": [getattr(props.preview_image, "name", ""), first_pixel(props.preview_image)],
    }
    fake.close()
    disable_addon()
    return result


# --- against a real sidecar --------------------------------------------------------------


class Phase:
    """Polls the add-on like its timer would, and records what the panel would show."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.props = bpy.context.scene.edit3d
        self.status = bpy.context.window_manager.edit3d
        self.longest_tick = 0.0
        self.timeouts: list[str] = []

    def tick(self) -> None:
        t0 = time.perf_counter()
        self.connection.poll_once(bpy.context)
        self.longest_tick = max(self.longest_tick, time.perf_counter() - t0)

    def wait(self, label: str, predicate: Callable[[], bool], limit_s: float,
             on_tick: Callable[[], None] | None = None) -> float | None:  # fmt: skip
        start = time.monotonic()
        while time.monotonic() - start < limit_s:
            self.tick()
            if on_tick is not None:
                on_tick()
            if predicate():
                return time.monotonic() - start
            time.sleep(0.02)
        self.timeouts.append(f"{label} after {limit_s} s (state {self.snapshot()})")
        return None

    def snapshot(self) -> dict[str, Any]:
        status = self.status
        return {
            "connection": status.connection_state,
            "job_kind": status.job_kind,
            "job_state": status.job_state,
            "step": status.step,
            "total": status.total,
            "progress": round(status.progress, 4),
            "eta_s": status.eta_s,
            "message": status.job_message,
        }

    def run_job(self, label: str, start: Callable[[], Any], limit_s: float) -> dict[str, Any]:
        """Start a job and follow it to its end, sampling the panel's properties."""
        samples: list[dict[str, Any]] = []
        start()
        self.wait(
            label,
            lambda: (
                self.status.job_id != ""
                and self.status.job_state in ("FINISHED", "FAILED", "CANCELLED")
            ),
            limit_s,
            on_tick=lambda: samples.append(self.snapshot()),
        )
        return {"final": self.snapshot(), "samples": _dedupe(samples)}


def _dedupe(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for sample in samples:
        if not out or out[-1] != sample:
            out.append(sample)
    return out


def _turns(props: Any) -> list[dict[str, str]]:
    return [
        {
            "turn_id": t.turn_id,
            "parent": t.parent,
            "kind": t.kind,
            "status": t.status,
            "instruction": t.instruction,
        }
        for t in props.turns
    ]


def _camera_rows(scene_io: Any, coll: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": obj.name,
            "view_name": scene_io.dataset_view_name(obj),
            "matrix_world": np.array(obj.matrix_world).tolist(),
            "lens": obj.data.lens,
            "sensor_width": obj.data.sensor_width,
            "shift": [obj.data.shift_x, obj.data.shift_y],
        }
        for obj in coll.objects
    ]


def _wrong_key(phase: Phase, connection: Any, endpoint: str, timeout_s: float) -> dict:
    status = phase.status
    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    saved = prefs.connection_file
    bpy.ops.edit3d.disconnect()
    prefs.connection_file = ""
    prefs.endpoint, prefs.key_hex = endpoint, "cd" * 32
    reports_before = len(status.reports)
    call_operator(bpy.ops.edit3d.connect)
    elapsed = phase.wait(
        "wrong key", lambda: status.connection_state == "DISCONNECTED", timeout_s + 5.0
    )
    errors = [r.message for r in list(status.reports)[reports_before:] if r.level == "ERROR"]
    prefs.connection_file = saved
    call_operator(bpy.ops.edit3d.connect)
    back = phase.wait("reconnect after wrong key", connection.is_ready, 20.0)
    return {"elapsed": elapsed, "errors": errors, "reconnected_s": back}


def _sessions_phase(phase: Phase, wanted: str) -> dict[str, Any]:
    """List the sidecar's sessions, pick one in the list, open it."""
    props = phase.props
    status = bpy.context.window_manager.edit3d
    status.sessions.clear()
    call_operator(bpy.ops.edit3d.list_sessions)
    phase.wait("session list", lambda: len(status.sessions) > 0, 20)
    listed = [(s.session_id, s.label, s.turn_count) for s in status.sessions]
    status.active_session_index = next(
        (i for i, s in enumerate(status.sessions) if s.session_id == wanted), 0
    )
    call_operator(bpy.ops.edit3d.open_session)
    phase.wait("opened from list", lambda: props.session_id == wanted and not props.turns, 20)
    return {"listed": listed, "opened": props.session_id, "turns": len(props.turns)}


def _upload_phase(phase: Phase, args: dict[str, Any]) -> dict[str, Any]:
    """Create an empty session and upload the dataset folder into it."""
    props = phase.props
    status = bpy.context.window_manager.edit3d
    props.source, props.upload_dir, props.session_name = "UPLOAD", args["dataset"], "uploaded"
    created = call_operator(bpy.ops.edit3d.create_session)
    samples: list[dict[str, Any]] = []
    phase.wait(
        "upload",
        lambda: status.job_kind == "upload" and status.job_state in ("FINISHED", "FAILED"),
        120,
        on_tick=lambda: samples.append(phase.snapshot()),
    )
    return {
        "operator": created,
        "session_id": props.session_id,
        "uploaded_dataset": props.uploaded_dataset,
        "final": phase.snapshot(),
        "samples": _dedupe(samples),
    }


def _image_rgb(image: Any) -> list:
    scene_io = sys.modules[f"{ADDON}.scene_io"]
    return scene_io.datablock_to_image(image)[..., :3].round(5).tolist()


def _render_phase(phase: Phase, connection: Any, view_index: int) -> dict[str, Any]:
    """Render a dataset camera through Blender's camera, and the same pose sent directly."""
    props = phase.props
    link = connection.LINK
    name = link.views.names[view_index]
    bpy.context.scene.camera = bpy.data.objects[name]
    via_blender = phase.run_job("render", lambda: bpy.ops.edit3d.render_camera(), 120)
    blender_image = _image_rgb(props.preview_image)
    msgs = connection.messages()
    fx, fy, cx, cy, w, h = (float(v) for v in link.views.intrinsics[view_index])
    direct = msgs.Camera(c2w=np.asarray(link.views.c2w[view_index]), fx=fx, fy=fy, cx=cx, cy=cy,
                         width=int(w), height=int(h), name=name)  # fmt: skip
    count = len(link.render_results)
    job = msgs.JobRender(session_id=props.session_id, camera=direct)
    events = sys.modules[f"{ADDON}.events"]
    phase.run_job("direct render", lambda: events.submit_job(bpy.context, job), 120)
    phase.wait("direct result", lambda: len(link.render_results) > count, 10)
    rgb = np.asarray(link.render_results[-1].rgb, dtype=np.float32)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    sent = link.render_results[-2].camera if len(link.render_results) > 1 else None
    return {
        "view": name,
        "job": via_blender["final"],
        "blender_image": blender_image,
        "direct_image": rgb.round(5).tolist(),
        "sent_camera": None
        if sent is None
        else {
            "c2w": np.asarray(sent.c2w).tolist(),
            "k": [sent.fx, sent.fy, sent.cx, sent.cy],
            "size": [sent.width, sent.height],
        },
        "direct_camera": {"c2w": link.views.c2w[view_index].tolist(), "k": [fx, fy, cx, cy]},
    }


def _live_preview_phase(phase: Phase, connection: Any) -> dict[str, Any]:
    """With live preview on, moving the active camera re-renders it without a click."""
    props, status, link = phase.props, phase.status, connection.LINK
    job_before = (status.job_id, status.job_kind)
    before = np.asarray(_image_rgb(props.preview_image))
    props.live_interval_s = 0.5
    props.live_preview = True
    bpy.context.scene.camera = bpy.data.objects[link.views.names[len(link.views.names) // 2]]
    count = len(link.render_results)
    waited = phase.wait("live render", lambda: len(link.render_results) > count, 120)
    phase.tick()
    after = np.asarray(_image_rgb(props.preview_image))
    props.live_preview = False
    sent = link.render_results[-1].camera if len(link.render_results) > count else None
    return {
        "seconds": waited,
        "image_changed": float(np.abs(after - before).max()),
        "sent_view": None if sent is None else sent.name,
        "camera_view": bpy.context.scene.camera.name,
        "panel_job_unchanged": job_before == (status.job_id, status.job_kind),
    }


def _export_phase(phase: Phase, connection: Any) -> dict[str, Any]:
    props = phase.props
    props.export_kind = "point_cloud"
    props.export_points, props.export_views = 3000, 6
    job = phase.run_job("export", lambda: bpy.ops.edit3d.export(into_scene=True), 180)
    phase.wait("export object", lambda: bool(connection.LINK.export_results), 10)
    result = connection.LINK.export_results[-1]
    coll = bpy.data.collections.get(sys.modules[f"{ADDON}.events"].EXPORT_COLLECTION)
    objects = [] if coll is None else list(coll.objects)
    if not objects:
        return {"job": job["final"], "objects": 0}
    obj = objects[-1]
    scene_io = sys.modules[f"{ADDON}.scene_io"]
    mesh = obj.data
    n = len(mesh.vertices)
    stored = np.empty(n * 4, dtype=np.float32)
    mesh.color_attributes["Color"].data.foreach_get("color", stored)
    colors = np.asarray(result.colors, dtype=np.float32)
    colors = colors / 255.0 if colors.max() > 1.0 else colors
    return {
        "job": job["final"],
        "objects": len(objects),
        "name": obj.name,
        "count": n,
        "sent_count": len(result.points),
        "attr": [mesh.color_attributes["Color"].domain, mesh.color_attributes["Color"].data_type],
        "max_position_err": float(np.abs(scene_io.mesh_points(obj) - result.points).max()),
        "max_color_err": float(
            np.abs(stored.reshape(n, 4)[:, :3] - scene_io.srgb_to_linear(colors)).max()
        ),
        "points_sample": np.asarray(result.points[:: max(1, n // 500)]).tolist(),
    }


def _kill_sidecar(connection: Any) -> None:
    import os
    import signal

    proc = connection.LINK.local_process
    os.killpg(proc.pid, signal.SIGKILL)  # the sidecar and its worker, like a crash
    proc.wait()


def _idle_kill_phase(phase: Phase, connection: Any) -> dict[str, Any]:
    """kill -9 an idle sidecar: the panel shows Lost; a restarted one is found again."""
    props = phase.props
    status = bpy.context.window_manager.edit3d
    old_key = connection.LINK.client.connection.key.hex()
    _kill_sidecar(connection)
    killed = time.monotonic()
    lost = phase.wait("idle lost", lambda: status.connection_state == "LOST", 20)
    lost_s = time.monotonic() - killed
    call_operator(bpy.ops.edit3d.start_sidecar)
    back = phase.wait("idle reconnect", lambda: status.connection_state == "CONNECTED", 60)
    client = connection.LINK.client
    return {
        "lost_s": lost_s if lost is not None else None,
        "reconnected_s": back,
        "old_key": old_key,
        "new_key": None if client is None else client.connection.key.hex(),
        "session_after": props.session_id,
    }


def _kill_phase(phase: Phase, connection: Any, args: dict[str, Any]) -> dict[str, Any]:
    """kill -9 the sidecar's process group mid-turn, then start it again."""
    props = phase.props
    status = bpy.context.window_manager.edit3d
    props.instruction = "make it blue"
    props.turn_steps = args["long_turn_steps"]
    bpy.ops.edit3d.run_turn()
    running = phase.wait(
        "long turn running", lambda: status.job_state == "RUNNING" and status.step > 0, 180
    )
    _kill_sidecar(connection)
    killed_at = time.monotonic()
    lost = phase.wait("lost", lambda: status.connection_state == "LOST", 20)
    lost_after_kill = time.monotonic() - killed_at if lost is not None else None
    errors_after_kill = [r.message for r in status.reports if r.level == "ERROR"][-2:]
    call_operator(bpy.ops.edit3d.start_sidecar)
    back = phase.wait("reconnected", lambda: connection.is_ready(), 90)
    phase.wait("job resolved", lambda: status.job_state not in ("SUBMITTED", "QUEUED",
                                                              "RUNNING"), 30)  # fmt: skip
    phase.wait("turns refreshed", lambda: any(t.status == "interrupted" for t in props.turns), 30)
    result = {
        "running_s": running,
        "lost_s": lost,
        "lost_after_kill_s": lost_after_kill,
        "errors_after_kill": errors_after_kill,
        "reconnected_s": back,
        "job_after": phase.snapshot(),
        "turns_after_restart": _turns(props),
    }
    interrupted = [i for i, t in enumerate(props.turns) if t.status == "interrupted"]
    if interrupted:
        props.active_turn_index = interrupted[0]
        bpy.ops.edit3d.discard_turn()
        phase.wait("discarded",
                   lambda: not any(t.status == "interrupted" for t in props.turns), 60)  # fmt: skip
        result["turns_after_discard"] = _turns(props)
    return result


def _edit_phases(phase: Phase, connection: Any, args: dict[str, Any], out: dict) -> None:
    props = phase.props
    status = bpy.context.window_manager.edit3d
    props.base_steps = args["base_steps"]
    out["base"] = phase.run_job("train base", lambda: bpy.ops.edit3d.train_base(), 600)
    phase.wait("base turn listed", lambda: any(t.kind == "base" for t in props.turns), 30)
    out["turns_after_base"] = _turns(props)
    out["render"] = _render_phase(phase, connection, args["render_view"])
    out["live"] = _live_preview_phase(phase, connection)
    props.edit_queries, props.keep_queries = "person", "head"
    out["masks"] = phase.run_job("masks", lambda: bpy.ops.edit3d.preview_masks(), 300)
    out["mask_images"] = {
        "caption": status.mask_caption,
        "caption_field": props.caption,
        "mask": None if props.mask_image is None else list(props.mask_image.size),
        "heatmap": None if props.heatmap_image is None else list(props.heatmap_image.size),
    }
    props.instruction = "make it red"
    props.turn_steps = args["turn_steps"]
    out["turn"] = phase.run_job("turn", lambda: bpy.ops.edit3d.run_turn(), 600)
    phase.wait("edit turn listed", lambda: any(t.kind == "edit" for t in props.turns), 30)
    out["turns_after_turn"] = _turns(props)
    out["head_after_turn"] = props.head
    # cancel a running turn
    props.turn_steps = args["long_turn_steps"]
    bpy.ops.edit3d.run_turn()
    phase.wait("turn to cancel running", lambda: status.job_state == "RUNNING" and status.step > 0,
               180)  # fmt: skip
    t0 = time.monotonic()
    bpy.ops.edit3d.cancel_job()
    phase.wait("cancelled", lambda: status.job_state == "CANCELLED", 60)
    out["cancel"] = {"latency_s": time.monotonic() - t0, "final": phase.snapshot()}
    out["export"] = _export_phase(phase, connection)
    base = next(i for i, t in enumerate(props.turns) if t.kind == "base")
    props.active_turn_index = base
    base_id = props.turns[base].turn_id
    bpy.ops.edit3d.checkout_turn()
    phase.wait("checked out", lambda: props.head == base_id, 30)
    out["checkout"] = {"base": base_id, "head": props.head}
    out["kill"] = _kill_phase(phase, connection, args)


@scenario
def sidecar_session(args: dict[str, Any]) -> dict[str, Any]:
    connection = addon_module("connection")
    status = bpy.context.window_manager.edit3d
    scene_io = sys.modules[f"{ADDON}.scene_io"]
    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    _configure(prefs, args)
    prefs.sidecar_python, prefs.sidecar_workdir = args["python"], args["workdir"]
    prefs.sidecar_device, prefs.sidecar_tiny = "cpu", True
    bpy.context.preferences.system.use_online_access = True
    phase = Phase(connection)
    props = phase.props
    out: dict[str, Any] = {}
    try:
        started = call_operator(bpy.ops.edit3d.start_sidecar)
        connected = phase.wait("connected", lambda: status.connection_state == "CONNECTED", 90)
        out["connect"] = {
            "operator": started, "seconds": connected, "server_version": status.server_version,
            "device": status.device, "capabilities": status.capabilities,
            "gpu_memory_total_gb": status.gpu_memory_total_gb,
        }  # fmt: skip
        if connected is None:
            return out
        endpoint = connection.LINK.client.endpoint
        props.source, props.dataset_path = "DATASET", args["dataset"]
        props.session_name, props.preset = "sample", "tiny"
        out["wrong_key"] = _wrong_key(phase, connection, endpoint, args["request_timeout_s"])
        out["upload"] = _upload_phase(phase, args)
        out["idle_kill"] = _idle_kill_phase(phase, connection)
        props.source, props.dataset_path = "DATASET", args["dataset"]
        props.session_name = "sample"
        call_operator(bpy.ops.edit3d.create_session)
        phase.wait(
            "views",
            lambda: (
                (connection.LINK.views is not None and len(connection.LINK.views.names) > 0)
                or status.job_state == "FAILED"
            ),
            180,
        )
        views = connection.LINK.views
        out["session"] = {
            "session_id": props.session_id,
            "job": phase.snapshot(),
            "views": [] if views is None else list(views.names),
        }
        if views is None or not views.names:
            return out
        bpy.ops.edit3d.import_cameras()
        coll = bpy.data.collections[props.camera_collection]
        out["cameras"] = _camera_rows(scene_io, coll)
        if args["with_workspace"]:
            _edit_phases(phase, connection, args, out)
        out["sessions"] = _sessions_phase(phase, out["upload"]["session_id"])
    except Exception:
        out["exception"] = traceback.format_exc()
    finally:
        out["timeouts"] = phase.timeouts
        out["longest_tick"] = phase.longest_tick
        out["reports"] = [(r.level, r.message) for r in status.reports]
        proc = connection.LINK.local_process
        if proc is not None and proc.poll() is None:
            reports_before = len(phase.status.reports)
            call_operator(bpy.ops.edit3d.stop_sidecar)
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
            end = time.monotonic() + 2.0  # longer than a heartbeat: a loss would show now
            while time.monotonic() < end:
                phase.tick()
                time.sleep(0.05)
            out["after_stop"] = {
                "state": phase.status.connection_state,
                "message": phase.status.connection_message,
                "errors": [r.message for r in list(phase.status.reports)[reports_before:]
                           if r.level == "ERROR"],
            }  # fmt: skip
        disable_addon()
        out["timer_registered_after_disable"] = bpy.app.timers.is_registered(connection._timer)
    return out


def main() -> int:
    name, args_path, result_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    args = json.loads(args_path.read_text())
    result = SCENARIOS[name](args)
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
