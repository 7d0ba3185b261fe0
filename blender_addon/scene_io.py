"""Scene data in and out of Blender: cameras, images, point clouds, meshes.

Plain functions on numpy arrays and bpy datablocks; no connection state. Conventions follow
the project's: images float32 [H, W, 3] in [0, 1] with row 0 at the top; cameras are
camera-to-world 4x4 matrices in the dataset's world frame (OpenGL: looks down -Z, +Y up,
the same as a Blender camera) with pixel intrinsics fx, fy, cx, cy, width, height: the
protocol's `Camera` record, which this module reads and builds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy
import numpy as np
from mathutils import Matrix

if TYPE_CHECKING:
    from .protocol.messages import Camera

DEFAULT_SENSOR_WIDTH_MM = 36.0
VIEW_NAME_KEY = "edit3d_view"
"""Custom property on imported camera objects: the dataset image file name of the view."""


# --- cameras -------------------------------------------------------------------------------


def make_camera(**fields: Any) -> Camera:
    """A protocol Camera (imported on use: the protocol package loads pyzmq)."""
    from .protocol.messages import Camera

    return Camera(**fields)


def pixel_aspect_for(fx: float, fy: float) -> tuple[float, float]:
    """Blender's (pixel_aspect_x, pixel_aspect_y) giving fy / fx (both are >= 1 in Blender)."""
    if fx <= 0 or fy <= 0:
        raise ValueError(f"fx, fy must be positive, got fx={fx}, fy={fy}")
    return (fy / fx, 1.0) if fy >= fx else (1.0, fx / fy)


def apply_intrinsics(
    cam: bpy.types.Camera, fx: float, fy: float, cx: float, cy: float, width: int, height: int
) -> None:
    """Set lens, sensor and shift of a camera datablock from pixel intrinsics.

    The fit is HORIZONTAL with the default 36 mm sensor, so lens = fx·sensor_width/W; fy is
    carried by the scene's pixel aspect (see pixel_aspect_for). With a horizontal fit Blender
    measures shift in units of the image width (y scaled by the pixel aspect).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"width, height must be positive, got {width}x{height}")
    cam.type = "PERSP"
    cam.sensor_fit = "HORIZONTAL"
    cam.sensor_width = DEFAULT_SENSOR_WIDTH_MM
    cam.lens_unit = "MILLIMETERS"
    cam.lens = fx * DEFAULT_SENSOR_WIDTH_MM / width
    ycor = fx / fy  # Blender's pixel_aspect_y / pixel_aspect_x
    cam.shift_x = (width / 2.0 - cx) / width
    cam.shift_y = (cy - height / 2.0) * ycor / width


def set_render_resolution(scene: bpy.types.Scene, width: int, height: int, fx: float, fy: float):
    """Make the scene render at the dataset resolution with the dataset's pixel aspect."""
    scene.render.resolution_x = int(width)
    scene.render.resolution_y = int(height)
    scene.render.resolution_percentage = 100
    aspect_x, aspect_y = pixel_aspect_for(fx, fy)
    scene.render.pixel_aspect_x = aspect_x
    scene.render.pixel_aspect_y = aspect_y


def create_camera_object(
    name: str, camera: Camera, collection: bpy.types.Collection
) -> bpy.types.Object:
    """A camera object at the view's exact pose and intrinsics, linked into collection."""
    cam = bpy.data.cameras.new(name)
    apply_intrinsics(
        cam, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height
    )
    obj = bpy.data.objects.new(name, cam)
    obj.matrix_world = Matrix(np.asarray(camera.c2w, dtype=np.float64).tolist())
    obj[VIEW_NAME_KEY] = name
    collection.objects.link(obj)
    return obj


def ensure_collection(scene: bpy.types.Scene, name: str) -> bpy.types.Collection:
    """The named collection under the scene's root, created if missing."""
    coll = bpy.data.collections.get(name)
    if coll is None:
        coll = bpy.data.collections.new(name)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    return coll


def clear_collection(coll: bpy.types.Collection) -> None:
    """Delete every object in the collection (with its orphaned data)."""
    for obj in list(coll.objects):
        data = obj.data
        bpy.data.objects.remove(obj, do_unlink=True)
        if data is not None and data.users == 0:
            _remove_datablock(data)


def _remove_datablock(data: bpy.types.ID) -> None:
    if isinstance(data, bpy.types.Camera):
        bpy.data.cameras.remove(data)
    elif isinstance(data, bpy.types.Mesh):
        bpy.data.meshes.remove(data)


def import_cameras(
    scene: bpy.types.Scene,
    names: Sequence[str],
    cameras: Sequence[Camera],
    collection_name: str = "Edit3D Cameras",
) -> list[bpy.types.Object]:
    """Replace the collection's cameras with one camera per dataset view.

    Blender's world becomes the dataset's world frame: matrix_world = c2w. The scene's render
    resolution and pixel aspect are set from the first view; the first camera becomes the
    scene camera.
    """
    if len(names) != len(cameras):
        raise ValueError(f"names and cameras differ in length: {len(names)} vs {len(cameras)}")
    coll = ensure_collection(scene, collection_name)
    clear_collection(coll)
    objects = [create_camera_object(n, p, coll) for n, p in zip(names, cameras, strict=True)]
    if cameras:
        first = cameras[0]
        set_render_resolution(scene, first.width, first.height, first.fx, first.fy)
        scene.camera = objects[0]
    bpy.context.view_layer.update()
    return objects


def read_transforms_json(path: str | Path) -> tuple[list[str], list[Camera]]:
    """Views of a nerfstudio transforms.json: (file_path as written, camera) per frame.

    Per-frame fl_x/fl_y/cx/cy/w/h override the top-level ones. Lens distortion, if any, is
    ignored: Blender cameras have none.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: no frames")
    names, cameras = [], []
    for index, frame in enumerate(frames):

        def get(key: str, frame: dict = frame, index: int = index) -> float:
            value = frame.get(key, data.get(key))
            if value is None:
                raise ValueError(f"{path}: frame {index} has no {key!r}")
            return float(value)

        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
        if c2w.shape != (4, 4):
            raise ValueError(f"{path}: frame {index} transform_matrix has shape {c2w.shape}")
        width, height = int(get("w")), int(get("h"))
        names.append(str(frame["file_path"]))
        cameras.append(make_camera(c2w=c2w, fx=get("fl_x"), fy=get("fl_y"), cx=get("cx"),
                                    cy=get("cy"), width=width, height=height, name=names[-1]))
    return names, cameras


def render_size(scene: bpy.types.Scene) -> tuple[int, int]:
    """The scene's output size in pixels (resolution × percentage)."""
    pct = scene.render.resolution_percentage / 100.0
    return (
        max(1, round(scene.render.resolution_x * pct)),
        max(1, round(scene.render.resolution_y * pct)),
    )


def camera_from_object(
    obj: bpy.types.Object, scene: bpy.types.Scene, size: tuple[int, int] | None = None
) -> Camera:
    """The inverse of create_camera_object: Blender camera → protocol Camera (c2w + pixel
    intrinsics, named after its dataset view if it is an imported one).

    Follows Blender's view plane: the fitted side (AUTO: the larger one, measured with the
    pixel aspect, using sensor_width; HORIZONTAL: x with sensor_width; VERTICAL: y with
    sensor_height) spans the sensor, and shift_x/shift_y are in units of that side.
    """
    if obj.type != "CAMERA":
        raise ValueError(f"object {obj.name!r} is a {obj.type}, not a CAMERA")
    cam = obj.data
    if cam.type != "PERSP":
        raise ValueError(f"camera {obj.name!r} has type {cam.type}; only PERSP is supported")
    width, height = size if size is not None else render_size(scene)
    ycor = scene.render.pixel_aspect_y / scene.render.pixel_aspect_x
    fit, sensor = cam.sensor_fit, cam.sensor_width
    if fit == "AUTO":
        fit = "VERTICAL" if ycor * height > width else "HORIZONTAL"
    elif fit == "VERTICAL":
        sensor = cam.sensor_height
    view_side = width if fit == "HORIZONTAL" else ycor * height
    fx = cam.lens * view_side / sensor
    fy = fx / ycor
    cx = width / 2.0 - cam.shift_x * view_side
    cy = height / 2.0 + cam.shift_y * view_side / ycor
    c2w = np.array(obj.matrix_world, dtype=np.float64)
    return make_camera(c2w=c2w, fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy),
                       width=width, height=height, name=dataset_view_name(obj))


def dataset_view_name(obj: bpy.types.Object) -> str | None:
    """The dataset image name of an imported camera, or None for any other camera."""
    value = obj.get(VIEW_NAME_KEY)
    return str(value) if value is not None else None


# --- images --------------------------------------------------------------------------------


def to_rgba(image: np.ndarray) -> np.ndarray:
    """[H, W] grey, [H, W, 3] RGB or [H, W, 4] RGBA (float [0,1] or uint8) → float32 RGBA."""
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image must be [H,W], [H,W,3] or [H,W,4], got shape {arr.shape}")
    if arr.shape[2] == 3:
        alpha = np.ones((*arr.shape[:2], 1), dtype=np.float32)
        arr = np.concatenate([arr, alpha], axis=2)
    return np.clip(arr, 0.0, 1.0)


def image_to_datablock(name: str, image: np.ndarray, *, non_color: bool = False) -> bpy.types.Image:
    """Write an image (row 0 = top) into the named Image datablock, reusing it if present.

    Blender stores row 0 at the bottom, so rows are flipped. non_color marks data images
    (masks, heatmaps) so Blender does not colour-manage them.
    """
    rgba = to_rgba(image)
    height, width = rgba.shape[:2]
    img = bpy.data.images.get(name)
    if img is not None and tuple(img.size) != (width, height):
        bpy.data.images.remove(img)
        img = None
    if img is None:
        img = bpy.data.images.new(name, width=width, height=height, alpha=True)
    img.colorspace_settings.name = "Non-Color" if non_color else "sRGB"
    img.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    img.update()
    return img


def datablock_to_image(img: bpy.types.Image) -> np.ndarray:
    """An Image datablock's pixels as float32 RGBA [H, W, 4], row 0 = top."""
    width, height = img.size
    buf = np.empty(width * height * 4, dtype=np.float32)
    img.pixels.foreach_get(buf)
    return buf.reshape(height, width, 4)[::-1].copy()


# --- geometry ------------------------------------------------------------------------------


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0,1] colours → linear (Blender's colour attributes are linear)."""
    c = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB8_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)
"""Linear value of every 8-bit sRGB code: a table lookup instead of a power per channel."""


def _colors_float(colors: np.ndarray, count: int) -> np.ndarray:
    arr = np.asarray(colors)
    if arr.shape != (count, 3) and arr.shape != (count, 4):
        raise ValueError(f"colors must be [{count}, 3] or [{count}, 4], got {arr.shape}")
    rgba = np.ones((count, 4), dtype=np.float32)
    if arr.dtype == np.uint8:
        rgba[:, :3] = _SRGB8_TO_LINEAR[arr[:, :3]]
        if arr.shape[1] == 4:
            rgba[:, 3] = arr[:, 3] / np.float32(255.0)
        return rgba
    rgba[:, :3] = srgb_to_linear(arr[:, :3])
    if arr.shape[1] == 4:
        rgba[:, 3] = arr[:, 3]
    return rgba


COLOR_ATTRIBUTE = "Color"


def _set_point_colors(mesh: bpy.types.Mesh, colors: np.ndarray | None) -> None:
    if colors is None:
        return
    rgba = _colors_float(colors, len(mesh.vertices))
    attr = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", rgba.ravel())
    mesh.color_attributes.active_color = attr
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index


def replace_object(name: str, mesh: bpy.types.Mesh, coll: bpy.types.Collection):
    old = bpy.data.objects.get(name)
    if old is not None:
        old_mesh = old.data
        bpy.data.objects.remove(old, do_unlink=True)
        if isinstance(old_mesh, bpy.types.Mesh) and old_mesh.users == 0:
            bpy.data.meshes.remove(old_mesh)
    obj = bpy.data.objects.new(name, mesh)
    coll.objects.link(obj)
    return obj


def add_vertices(mesh: bpy.types.Mesh, points: np.ndarray) -> None:
    """Append vertices at `points` [N, 3] float32 (through the position attribute: ~20x
    faster than vertices.foreach_set("co") for a million points)."""
    mesh.vertices.add(len(points))
    mesh.attributes["position"].data.foreach_set("vector", points.ravel())


def _checked_points(points: np.ndarray) -> np.ndarray:
    pts = np.ascontiguousarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got shape {pts.shape}")
    return pts


COLOR_MATERIAL = "Edit3D Color"
POINTS_NODE_GROUP = "Edit3D Points"


def color_material() -> bpy.types.Material:
    """The material that shows the "Color" attribute (shared by clouds and meshes)."""
    material = bpy.data.materials.get(COLOR_MATERIAL)
    if material is not None:
        return material
    material = bpy.data.materials.new(COLOR_MATERIAL)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_type = "GEOMETRY"
    attribute.attribute_name = COLOR_ATTRIBUTE
    attribute.location = (bsdf.location.x - 300, bsdf.location.y)
    links.new(attribute.outputs["Color"], bsdf.inputs["Base Color"])
    # captured colours already contain their lighting: emit them so an unlit scene shows them
    links.new(attribute.outputs["Color"], bsdf.inputs["Emission Color"])
    bsdf.inputs["Emission Strength"].default_value = 1.0
    return material


def _points_node_group() -> bpy.types.GeometryNodeTree:
    """Geometry Nodes: mesh vertices → points of an adjustable radius, coloured material."""
    group = bpy.data.node_groups.get(POINTS_NODE_GROUP)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(POINTS_NODE_GROUP, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    radius = group.interface.new_socket("Radius", in_out="INPUT", socket_type="NodeSocketFloat")
    radius.default_value, radius.min_value = 0.01, 0.0
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    source, sink = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    to_points = nodes.new("GeometryNodeMeshToPoints")
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = color_material()
    for x, node in enumerate((source, to_points, set_material, sink)):
        node.location = (x * 220, 0)
    links.new(source.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(source.outputs["Radius"], to_points.inputs["Radius"])
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], sink.inputs["Geometry"])
    return group


def point_radius(points: np.ndarray) -> float:
    """A radius that roughly closes the gaps of N points spread over a surface."""
    if len(points) < 2:
        return 0.01
    extent = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    return max(extent / np.sqrt(len(points)), 1e-6) * 0.5


def point_cloud_object(
    name: str,
    points: np.ndarray,
    colors: np.ndarray | None,
    collection: bpy.types.Collection,
) -> bpy.types.Object:
    """An object of world-frame points [N,3] with a per-point colour, visible as points.

    The data is a vertex-only mesh; colors are sRGB ([N,3|4] float in [0,1] or uint8) and
    stored linear in a FLOAT_COLOR POINT attribute named "Color". A Geometry Nodes modifier
    ("Mesh to Points", radius adjustable on the modifier) makes real points with the colour
    material, so the cloud shows in Object mode, EEVEE and Cycles. An object of the same
    name is replaced.
    """
    pts = _checked_points(points)
    mesh = bpy.data.meshes.new(name)
    add_vertices(mesh, pts)
    _set_point_colors(mesh, colors)
    mesh.update()
    obj = replace_object(name, mesh, collection)
    modifier = obj.modifiers.new("Edit3D Points", "NODES")
    group = _points_node_group()
    modifier.node_group = group
    radius_id = group.interface.items_tree["Radius"].identifier
    modifier[radius_id] = point_radius(pts)
    mesh.materials.append(color_material())
    return obj


def mesh_object(
    name: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_colors: np.ndarray | None,
    collection: bpy.types.Collection,
) -> bpy.types.Object:
    """A triangle mesh object from world-frame vertices [V,3] and faces [F,3] (indices)."""
    verts = _checked_points(vertices)
    tris = np.ascontiguousarray(faces, dtype=np.int32)
    if tris.ndim != 2 or tris.shape[1] != 3:
        raise ValueError(f"faces must be [F, 3], got shape {tris.shape}")
    if tris.size and (tris.min() < 0 or tris.max() >= len(verts)):
        raise ValueError(f"faces index outside 0..{len(verts) - 1}")
    mesh = bpy.data.meshes.new(name)
    add_vertices(mesh, verts)
    mesh.loops.add(tris.size)
    mesh.loops.foreach_set("vertex_index", tris.ravel())
    mesh.polygons.add(len(tris))
    mesh.polygons.foreach_set("loop_start", np.arange(0, tris.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(len(tris), 3, dtype=np.int32))
    _set_point_colors(mesh, vertex_colors)
    mesh.update()
    mesh.validate()
    mesh.materials.append(color_material())
    return replace_object(name, mesh, collection)


def mesh_points(obj: bpy.types.Object) -> np.ndarray:
    """World-frame vertex positions [N,3] of a mesh object (object transform applied)."""
    mesh = obj.data
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    pts = co.reshape(-1, 3).astype(np.float64)
    mat = np.array(obj.matrix_world, dtype=np.float64)
    return pts @ mat[:3, :3].T + mat[:3, 3]
