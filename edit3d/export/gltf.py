"""Binary glTF 2.0 (.glb) for meshes and point clouds, written with struct + json.

Layout: 12-byte header (magic ``glTF``, version 2, total length), a JSON chunk padded
with spaces to 4 bytes, a BIN chunk padded with zeros. One buffer holding POSITION
(float32 VEC3, with the min/max the spec requires), optional NORMAL, COLOR_0 (float32
VEC3) and, for meshes, uint32 indices; primitive mode 4 (triangles) or 0 (points).

glTF defines COLOR_0 as *linear* RGB, so display (sRGB) colours are converted on write
(`srgb_to_linear`); readers that follow the spec (Blender's importer) show the same
colours as the PLY/OBJ files.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from edit3d.export.geometry import Mesh, PointCloud

_GLB_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_MODE_POINTS, _MODE_TRIANGLES = 0, 4


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """The sRGB transfer function inverted (IEC 61966-2-1)."""
    c = np.clip(np.asarray(colors, dtype=np.float64), 0.0, 1.0)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)


class _BufferBuilder:
    """Accumulates aligned binary views and their accessors."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, accessor_type: str, component: int, target: int) -> int:
        data = np.ascontiguousarray(array).tobytes()
        self.blob += b"\0" * (-len(self.blob) % 4)
        self.views.append(
            {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data), "target": target}
        )
        self.blob += data
        accessor = {
            "bufferView": len(self.views) - 1,
            "componentType": component,
            "count": int(array.shape[0]) if accessor_type != "SCALAR" else int(array.size),
            "type": accessor_type,
        }
        if accessor_type == "VEC3" and component == _FLOAT:
            accessor["min"] = [float(v) for v in array.min(axis=0)] if len(array) else [0.0] * 3
            accessor["max"] = [float(v) for v in array.max(axis=0)] if len(array) else [0.0] * 3
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def _glb_bytes(document: dict, blob: bytes) -> bytes:
    json_bytes = json.dumps(document, separators=(",", ":")).encode("utf-8")
    json_bytes += b" " * (-len(json_bytes) % 4)
    blob = bytes(blob) + b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(json_bytes) + 8 + len(blob)
    return b"".join(
        [
            struct.pack("<III", _GLB_MAGIC, 2, total),
            struct.pack("<II", len(json_bytes), _CHUNK_JSON),
            json_bytes,
            struct.pack("<II", len(blob), _CHUNK_BIN),
            blob,
        ]
    )


def _write_primitive(
    path: Path,
    positions: np.ndarray,
    colors: np.ndarray,
    normals: np.ndarray | None,
    faces: np.ndarray | None,
    name: str,
) -> Path:
    buffers = _BufferBuilder()
    attributes = {
        "POSITION": buffers.add(positions.astype(np.float32), "VEC3", _FLOAT, _ARRAY_BUFFER)
    }
    if normals is not None:
        attributes["NORMAL"] = buffers.add(
            normals.astype(np.float32), "VEC3", _FLOAT, _ARRAY_BUFFER
        )
    attributes["COLOR_0"] = buffers.add(srgb_to_linear(colors), "VEC3", _FLOAT, _ARRAY_BUFFER)
    primitive: dict = {"attributes": attributes, "mode": _MODE_POINTS}
    if faces is not None:
        indices = faces.astype(np.uint32).reshape(-1)
        primitive["indices"] = buffers.add(indices, "SCALAR", _UINT32, _ELEMENT_ARRAY_BUFFER)
        primitive["mode"] = _MODE_TRIANGLES
    document = {
        "asset": {"version": "2.0", "generator": "edit3d"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": [primitive]}],
        "buffers": [{"byteLength": len(buffers.blob) + (-len(buffers.blob) % 4)}],
        "bufferViews": buffers.views,
        "accessors": buffers.accessors,
    }
    path = Path(path)
    path.write_bytes(_glb_bytes(document, buffers.blob))
    return path


def write_mesh_glb(path: Path, mesh: Mesh, *, name: str = "edit3d_mesh") -> Path:
    """A .glb with one triangle primitive (positions, normals if any, COLOR_0, indices)."""
    return _write_primitive(path, mesh.vertices, mesh.colors, mesh.normals, mesh.faces, name)


def write_point_cloud_glb(path: Path, cloud: PointCloud, *, name: str = "edit3d_points") -> Path:
    """A .glb with one POINTS primitive (positions, normals if any, COLOR_0)."""
    return _write_primitive(path, cloud.points, cloud.colors, cloud.normals, None, name)
