"""3D Gaussian splats into Blender: the reference 3DGS PLY read with numpy, and an object that
shows the splats in Object mode and in renders.

Blender 4.2-4.5 cannot add points to a PointCloud datablock from Python (it has no
`points.add`), so splats live on a vertex-only mesh, one vertex per Gaussian, with POINT
attributes:

* ``Color``     FLOAT_COLOR  base colour 0.5 + C0·f_dc (sRGB values, stored linear);
* ``opacity``   FLOAT        sigmoid of the stored logit;
* ``scale``     FLOAT_VECTOR per-axis standard deviation, exp of the stored log;
* ``rotation``  QUATERNION   the Gaussian's orientation (normalised w, x, y, z).

A Geometry Nodes modifier instances an ico-sphere on every vertex, turned by ``rotation``
and stretched by ``scale`` times the modifier's Size (in standard deviations), with a
material that reads the colour and opacity the instances inherit from their points.
Everything runs on whole arrays (foreach_set); no Python loop per splat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import scene_io

SH_C0 = 0.28209479177387814
"""Zeroth-order real spherical harmonic: colour = 0.5 + SH_C0 · f_dc."""
SPLAT_PROPERTIES = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0",
                    "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")  # fmt: skip
"""Vertex properties a 3DGS PLY must have (others, e.g. f_rest_*, are skipped)."""
SPLAT_MATERIAL = "Edit3D Splat"
SPLATS_NODE_GROUP = "Edit3D Splats"
DEFAULT_SIZE = 2.0
"""Instance radius in standard deviations (the ellipsoid that holds most of a Gaussian)."""
_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "<i2", "ushort": "<u2", "int": "<i4",
              "uint": "<u4", "float": "<f4", "double": "<f8", "int8": "i1", "uint8": "u1",
              "int16": "<i2", "uint16": "<u2", "int32": "<i4", "uint32": "<u4",
              "float32": "<f4", "float64": "<f8"}  # fmt: skip


@dataclass
class Splats:
    """Gaussians in the reference 3DGS encoding, world frame."""

    means: np.ndarray
    """[N, 3] centres."""
    log_scales: np.ndarray
    """[N, 3] log standard deviations."""
    rotations: np.ndarray
    """[N, 4] quaternions w, x, y, z (any length; normalised here)."""
    opacity_logits: np.ndarray
    """[N] opacity before the sigmoid."""
    sh_dc: np.ndarray
    """[N, 3] degree-0 SH coefficients."""

    def __post_init__(self) -> None:
        n = len(self.means)
        for name, cols in (("means", 3), ("log_scales", 3), ("rotations", 4), ("sh_dc", 3)):
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.shape != (n, cols):
                raise ValueError(f"{name} must have shape ({n}, {cols}), got {value.shape}")
            setattr(self, name, value)
        self.opacity_logits = np.asarray(self.opacity_logits, dtype=np.float32)
        if self.opacity_logits.shape != (n,):
            raise ValueError(f"opacity_logits must have shape ({n},), got "
                             f"{self.opacity_logits.shape}")  # fmt: skip

    def colors(self) -> np.ndarray:
        """[N, 3] sRGB base colours in [0, 1]."""
        return np.clip(0.5 + SH_C0 * self.sh_dc, 0.0, 1.0)

    def opacities(self) -> np.ndarray:
        """[N] opacities in (0, 1)."""
        return 1.0 / (1.0 + np.exp(-self.opacity_logits))

    def scales(self) -> np.ndarray:
        """[N, 3] standard deviations."""
        return np.exp(self.log_scales)

    def unit_rotations(self) -> np.ndarray:
        """[N, 4] unit quaternions (a zero quaternion becomes the identity)."""
        norms = np.linalg.norm(self.rotations, axis=1, keepdims=True)
        unit = self.rotations / np.where(norms > 0, norms, 1.0)
        unit[norms[:, 0] == 0] = (1.0, 0.0, 0.0, 0.0)
        return unit


def _ply_header(f) -> tuple[int, list[tuple[str, str]]]:
    """(vertex count, [(property, numpy dtype)]) of a binary little-endian PLY whose first
    element is `vertex` with scalar properties."""
    if f.readline().strip() != b"ply":
        raise ValueError("not a PLY file (no 'ply' magic)")
    count, properties, element = -1, [], None
    while True:
        line = f.readline()
        if not line:
            raise ValueError("PLY header has no end_header")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and words[1] != "binary_little_endian":
            raise ValueError(f"only binary_little_endian 3DGS PLY is read, got {words[1]}")
        if words[0] == "element":
            if element is None and words[1] != "vertex":  # the data would start elsewhere
                raise ValueError(f"the first element must be vertex, got {words[1]}")
            element = words[1]
            if element == "vertex":
                count = int(words[2])
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise ValueError(f"vertex property {' '.join(words[1:])} is not a scalar")
            properties.append((words[2], _PLY_TYPES[words[1]]))
        elif words[0] == "end_header":
            return count, properties


def read_splat_ply(path: str | Path) -> Splats:
    """The Gaussians of a 3DGS PLY (the reference layout; SH beyond degree 0 is skipped)."""
    path = Path(path)
    with path.open("rb") as f:
        try:
            count, properties = _ply_header(f)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        names = [name for name, _ in properties]
        missing = [name for name in SPLAT_PROPERTIES if name not in names]
        if count < 0 or missing:
            raise ValueError(f"{path}: not a 3DGS PLY (vertex properties missing: {missing})")
        table = np.fromfile(f, dtype=np.dtype(properties), count=count)
    if len(table) != count:
        raise ValueError(f"{path}: holds {len(table)} of its {count} splats (truncated)")

    def columns(*keys: str) -> np.ndarray:
        return np.stack([table[key] for key in keys], axis=1)

    return Splats(
        means=columns("x", "y", "z"),
        log_scales=columns("scale_0", "scale_1", "scale_2"),
        rotations=columns("rot_0", "rot_1", "rot_2", "rot_3"),
        opacity_logits=table["opacity"],
        sh_dc=columns("f_dc_0", "f_dc_1", "f_dc_2"),
    )


def _set_attribute(mesh: bpy.types.Mesh, name: str, kind: str, key: str, values) -> None:
    attribute = mesh.attributes.new(name, kind, "POINT")
    attribute.data.foreach_set(key, np.ascontiguousarray(values, dtype=np.float32).ravel())


def splat_material() -> bpy.types.Material:
    """Colour and opacity of each splat, read from the instancer's point attributes."""
    material = bpy.data.materials.get(SPLAT_MATERIAL)
    if material is not None:
        return material
    material = bpy.data.materials.new(SPLAT_MATERIAL)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    for row, (name, socket, targets) in enumerate((
        (scene_io.COLOR_ATTRIBUTE, "Color", ("Base Color", "Emission Color")),
        ("opacity", "Fac", ("Alpha",)),
    )):  # fmt: skip
        attribute = nodes.new("ShaderNodeAttribute")
        attribute.attribute_type = "INSTANCER"
        attribute.attribute_name = name
        attribute.location = (bsdf.location.x - 300, bsdf.location.y - 200 * row)
        for target in targets:
            links.new(attribute.outputs[socket], bsdf.inputs[target])
    # captured colours already contain their lighting: emit them so an unlit scene shows them
    bsdf.inputs["Emission Strength"].default_value = 1.0
    return material


def _named(nodes, data_type: str, name: str):
    node = nodes.new("GeometryNodeInputNamedAttribute")
    node.data_type = data_type
    node.inputs["Name"].default_value = name
    return node


def splats_node_group() -> bpy.types.GeometryNodeTree:
    """Geometry Nodes: an ico-sphere instanced on every vertex, oriented by ``rotation``,
    scaled by ``scale`` · Size, with the splat material."""
    group = bpy.data.node_groups.get(SPLATS_NODE_GROUP)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(SPLATS_NODE_GROUP, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = group.interface.new_socket("Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value = DEFAULT_SIZE, 0.0
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    source, sink = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    sphere = nodes.new("GeometryNodeMeshIcoSphere")
    sphere.inputs["Radius"].default_value, sphere.inputs["Subdivisions"].default_value = 1.0, 1
    rotation = _named(nodes, "QUATERNION", "rotation")
    scale = _named(nodes, "FLOAT_VECTOR", "scale")
    sized = nodes.new("ShaderNodeVectorMath")
    sized.operation = "SCALE"
    instance = nodes.new("GeometryNodeInstanceOnPoints")
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = splat_material()
    for x, node in enumerate((source, sphere, rotation, scale, sized, instance, set_material)):
        node.location = (x * 200, 0)
    sink.location = (1600, 0)
    links.new(scale.outputs["Attribute"], sized.inputs[0])
    links.new(source.outputs["Size"], sized.inputs["Scale"])
    links.new(source.outputs["Geometry"], instance.inputs["Points"])
    links.new(sphere.outputs["Mesh"], instance.inputs["Instance"])
    links.new(rotation.outputs["Attribute"], instance.inputs["Rotation"])
    links.new(sized.outputs["Vector"], instance.inputs["Scale"])
    links.new(instance.outputs["Instances"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], sink.inputs["Geometry"])
    return group


def splat_object(
    name: str, splats: Splats, collection: bpy.types.Collection, *, size: float = DEFAULT_SIZE
) -> bpy.types.Object:
    """An object showing `splats` (world frame) as oriented, scaled, coloured ellipsoids;
    an object of the same name is replaced. See the module docstring for its attributes."""
    mesh = bpy.data.meshes.new(name)
    scene_io.add_vertices(mesh, np.ascontiguousarray(splats.means, dtype=np.float32))
    rgba = np.ones((len(splats.means), 4), dtype=np.float32)
    rgba[:, :3] = scene_io.srgb_to_linear(splats.colors())
    color = mesh.color_attributes.new(scene_io.COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    color.data.foreach_set("color", rgba.ravel())
    _set_attribute(mesh, "opacity", "FLOAT", "value", splats.opacities())
    _set_attribute(mesh, "scale", "FLOAT_VECTOR", "vector", splats.scales())
    _set_attribute(mesh, "rotation", "QUATERNION", "value", splats.unit_rotations())
    mesh.update()
    obj = scene_io.replace_object(name, mesh, collection)
    modifier = obj.modifiers.new(SPLATS_NODE_GROUP, "NODES")
    group = splats_node_group()
    modifier.node_group = group
    modifier[group.interface.items_tree["Size"].identifier] = size
    mesh.materials.append(splat_material())
    return obj
