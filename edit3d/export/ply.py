"""PLY files, binary little-endian: point clouds, meshes and Gaussian splats.

Layouts written:

* point cloud: ``vertex`` with ``x y z`` float, optional ``nx ny nz`` float,
  ``red green blue`` uchar (display/sRGB values, the convention of most PLY readers);
* mesh: the same ``vertex`` element plus ``face`` with ``list uchar int vertex_indices``;
* Gaussian splats: the reference 3DGS layout (see `write_gaussian_splat_ply`).

`read_ply` reads back binary little-endian files with scalar properties and list faces
(what this module writes, and what most tools write), and ASCII files (what
`ns-process-data` writes for a capture's sparse points).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edit3d.export.geometry import GaussianSplats, Mesh, PointCloud

_PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "<i2", "int16": "<i2", "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}  # fmt: skip


def colors_to_uchar(colors: np.ndarray) -> np.ndarray:
    """[N, 3] float in [0, 1] -> uint8, rounded."""
    return np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)


def _vertex_table(
    points: np.ndarray, colors: np.ndarray | None, normals: np.ndarray | None
) -> np.ndarray:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    table = np.empty(len(points), dtype=fields)
    for axis, name in enumerate("xyz"):
        table[name] = points[:, axis]
    if normals is not None:
        for axis, name in enumerate(("nx", "ny", "nz")):
            table[name] = normals[:, axis]
    if colors is not None:
        rgb = colors_to_uchar(colors)
        for channel, name in enumerate(("red", "green", "blue")):
            table[name] = rgb[:, channel]
    return table


def _header(elements: list[tuple[str, int, list[str]]]) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", "comment written by edit3d"]
    for name, count, properties in elements:
        lines.append(f"element {name} {count}")
        lines += [f"property {p}" for p in properties]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def _scalar_properties(table: np.ndarray) -> list[str]:
    names = {"<f4": "float", "u1": "uchar", "<i4": "int", "<u4": "uint", "<f8": "double"}
    return [f"{names[table.dtype[n].str.replace('|', '')]} {n}" for n in table.dtype.names]


def _write(path: Path, vertices: np.ndarray, faces: np.ndarray | None = None) -> Path:
    path = Path(path)
    elements = [("vertex", len(vertices), _scalar_properties(vertices))]
    face_bytes = b""
    if faces is not None:
        elements.append(("face", len(faces), ["list uchar int vertex_indices"]))
        face_table = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
        face_table["n"] = 3
        face_table["v"] = faces
        face_bytes = face_table.tobytes()
    with path.open("wb") as f:
        f.write(_header(elements))
        f.write(vertices.tobytes())
        f.write(face_bytes)
    return path


def write_point_cloud_ply(path: Path, cloud: PointCloud) -> Path:
    """Binary PLY of the cloud's points, normals (if any) and uchar colours."""
    return _write(path, _vertex_table(cloud.points, cloud.colors, cloud.normals))


def write_mesh_ply(path: Path, mesh: Mesh) -> Path:
    """Binary PLY of the mesh: vertices with normals (if any) and colours, triangle faces."""
    return _write(path, _vertex_table(mesh.vertices, mesh.colors, mesh.normals), mesh.faces)


def gaussian_splat_properties(sh_rest_count: int) -> list[str]:
    """Vertex property names of a 3DGS PLY, in file order."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * sh_rest_count)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def write_gaussian_splat_ply(path: Path, splats: GaussianSplats) -> Path:
    """The 3DGS reference layout read by splat viewers and importers.

    Every property is float32: position; ``nx ny nz`` (zeros, kept for compatibility);
    ``f_dc_0..2``; ``f_rest_*`` channel-major (all of red's coefficients, then green's,
    then blue's); ``opacity`` as a logit; ``scale_0..2`` as logs; ``rot_0..3`` a
    quaternion w, x, y, z.
    """
    n, rest = len(splats.means), splats.sh_rest.shape[1]
    names = gaussian_splat_properties(rest)
    table = np.zeros(n, dtype=[(name, "<f4") for name in names])
    columns = np.concatenate(
        [
            splats.means,
            np.zeros((n, 3), np.float32),
            splats.sh_dc,
            splats.sh_rest.transpose(0, 2, 1).reshape(n, 3 * rest),
            splats.opacities_logit[:, None],
            splats.scales_log,
            splats.quats_wxyz,
        ],
        axis=1,
    )
    for index, name in enumerate(names):
        table[name] = columns[:, index]
    return _write(path, table)


def read_gaussian_splat_ply(path: Path) -> GaussianSplats:
    """Reads a 3DGS PLY back (any SH degree)."""
    vertex = read_ply(path)["vertex"]
    rest_count = sum(1 for name in vertex if name.startswith("f_rest_")) // 3
    n = len(vertex["x"])

    def stack(*names: str) -> np.ndarray:
        return np.stack([vertex[name] for name in names], axis=1)

    rest = stack(*[f"f_rest_{i}" for i in range(3 * rest_count)]) if rest_count else None
    return GaussianSplats(
        means=stack("x", "y", "z"),
        scales_log=stack("scale_0", "scale_1", "scale_2"),
        quats_wxyz=stack("rot_0", "rot_1", "rot_2", "rot_3"),
        opacities_logit=vertex["opacity"],
        sh_dc=stack("f_dc_0", "f_dc_1", "f_dc_2"),
        sh_rest=(
            rest.reshape(n, 3, rest_count).transpose(0, 2, 1)
            if rest is not None
            else np.zeros((n, 0, 3), np.float32)
        ),
    )


# --- reading ---------------------------------------------------------------------------


PlyElements = list[tuple[str, int, list[tuple[str, ...]]]]
"""A header's elements: (name, count, properties), a property ("type", "name") or
("list", "count type", "item type", "name")."""


def _parse_header(f) -> tuple[str, PlyElements]:
    """(format, elements) of a PLY header; the file is left at the first data byte."""
    if f.readline().strip() != b"ply":
        raise ValueError("path: not a PLY file (no 'ply' magic)")
    elements: PlyElements = []
    encoding = ""
    while True:
        line = f.readline()
        if not line:
            raise ValueError("path: PLY header has no end_header")
        words = line.decode("ascii").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            encoding = words[1]
            if encoding not in ("binary_little_endian", "ascii"):
                raise ValueError(
                    f"path: only binary_little_endian and ascii PLY are read, got {encoding}"
                )
        if words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            elements[-1][2].append(tuple(words[1:]))
        elif words[0] == "end_header":
            return encoding, elements


def read_ply(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{element: {property: array}}; list properties of fixed length become [N, k] arrays."""
    with Path(path).open("rb") as f:
        encoding, elements = _parse_header(f)
        offset = f.tell()
    data = Path(path).read_bytes()
    if encoding == "ascii":
        return _read_ascii(data[offset:], elements)
    result: dict[str, dict[str, np.ndarray]] = {}
    for name, count, properties in elements:
        if any(p[0] == "list" for p in properties):
            result[name], offset = _read_list_element(data, offset, count, properties)
        else:
            dtype = np.dtype([(p[1], _PLY_TYPES[p[0]]) for p in properties])
            table = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += dtype.itemsize * count
            result[name] = {p[1]: table[p[1]].copy() for p in properties}
    return result


def _read_list_element(
    data: bytes, offset: int, count: int, properties: list[tuple[str, ...]]
) -> tuple[dict[str, np.ndarray], int]:
    if len(properties) != 1:
        raise ValueError("path: only elements with a single list property are read")
    _, count_type, item_type, prop_name = properties[0]
    count_dtype, item_dtype = np.dtype(_PLY_TYPES[count_type]), np.dtype(_PLY_TYPES[item_type])
    fixed = _read_fixed_length_list(data, offset, count, count_dtype, item_dtype)
    if fixed is not None:
        values, offset = fixed
        return {prop_name: values}, offset
    rows = []
    for _ in range(count):
        k = int(np.frombuffer(data, count_dtype, 1, offset)[0])
        offset += count_dtype.itemsize
        rows.append(np.frombuffer(data, item_dtype, k, offset))
        offset += item_dtype.itemsize * k
    lengths = {len(r) for r in rows}
    values = np.stack(rows) if len(lengths) == 1 else np.array(rows, dtype=object)
    return {prop_name: values}, offset


def _read_fixed_length_list(
    data: bytes, offset: int, count: int, count_dtype: np.dtype, item_dtype: np.dtype
) -> tuple[np.ndarray, int] | None:
    """Fast path when every row has the first row's length (e.g. all triangles)."""
    if count == 0:
        return np.zeros((0, 0), item_dtype), offset
    k = int(np.frombuffer(data, count_dtype, 1, offset)[0])
    row = np.dtype([("n", count_dtype), ("v", item_dtype, (k,))])
    if offset + row.itemsize * count > len(data):
        return None
    table = np.frombuffer(data, row, count, offset)
    if not np.all(table["n"] == k):
        return None
    return table["v"].copy().reshape(count, k), offset + row.itemsize * count


def _read_ascii(body: bytes, elements: PlyElements) -> dict[str, dict[str, np.ndarray]]:
    """The elements of an ASCII PLY body: whitespace-separated values, row after row."""
    tokens = iter(body.split())
    result: dict[str, dict[str, np.ndarray]] = {}
    try:
        for name, count, properties in elements:
            columns: dict[str, list] = {p[-1]: [] for p in properties}
            for _ in range(count):
                for prop in properties:
                    if prop[0] == "list":
                        items = [next(tokens) for _ in range(int(next(tokens)))]
                        columns[prop[-1]].append(np.array(items, dtype=_PLY_TYPES[prop[2]]))
                    else:
                        columns[prop[-1]].append(next(tokens))
            result[name] = {
                p[-1]: _ascii_column(columns[p[-1]], p) for p in properties
            }
    except StopIteration:
        raise ValueError("path: ASCII PLY ends before its header's element counts") from None
    return result


def _ascii_column(values: list, prop: tuple[str, ...]) -> np.ndarray:
    if prop[0] != "list":
        return np.array(values, dtype=np.float64).astype(_PLY_TYPES[prop[0]])
    lengths = {len(row) for row in values}
    return np.stack(values) if len(lengths) == 1 else np.array(values, dtype=object)
