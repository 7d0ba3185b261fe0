"""Wavefront OBJ with vertex colours (the common ``v x y z r g b`` extension).

Colours are written as floats in [0, 1] (display values), which MeshLab, Blender's OBJ
importer and trimesh read. Faces are 1-based; with normals, ``f a//a b//b c//c``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edit3d.export.geometry import Mesh, PointCloud


def _vertex_lines(points: np.ndarray, colors: np.ndarray) -> list[str]:
    rows = np.concatenate([points, np.clip(colors, 0.0, 1.0)], axis=1)
    return [f"v {x:.7g} {y:.7g} {z:.7g} {r:.6g} {g:.6g} {b:.6g}" for x, y, z, r, g, b in rows]


def _normal_lines(normals: np.ndarray) -> list[str]:
    return [f"vn {x:.6g} {y:.6g} {z:.6g}" for x, y, z in normals]


def write_point_cloud_obj(path: Path, cloud: PointCloud) -> Path:
    """Vertices only (many tools show an OBJ without faces as points)."""
    lines = ["# edit3d point cloud, world frame", *_vertex_lines(cloud.points, cloud.colors)]
    if cloud.normals is not None:
        lines += _normal_lines(cloud.normals)
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def write_mesh_obj(path: Path, mesh: Mesh) -> Path:
    """Vertices with colours, optional normals, triangle faces."""
    lines = ["# edit3d mesh, world frame", *_vertex_lines(mesh.vertices, mesh.colors)]
    faces = mesh.faces + 1
    if mesh.normals is not None:
        lines += _normal_lines(mesh.normals)
        lines += [f"f {a}//{a} {b}//{b} {c}//{c}" for a, b, c in faces]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in faces]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def read_obj(path: Path) -> Mesh | PointCloud:
    """Reads what the writers above write (vertex colours, optional normals, triangles)."""
    vertices, normals, faces = [], [], []
    for line in Path(path).read_text(encoding="ascii").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "v":
            vertices.append([float(w) for w in words[1:7]])
        elif words[0] == "vn":
            normals.append([float(w) for w in words[1:4]])
        elif words[0] == "f":
            faces.append([int(w.split("/")[0]) - 1 for w in words[1:4]])
    table = np.asarray(vertices, dtype=np.float32).reshape(-1, 6)
    normal_array = np.asarray(normals, dtype=np.float32) if normals else None
    if faces:
        return Mesh(table[:, :3], np.asarray(faces), table[:, 3:], normal_array)
    return PointCloud(table[:, :3], table[:, 3:], normal_array)
