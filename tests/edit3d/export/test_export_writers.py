"""Writers round-trip: own reader, plyfile and trimesh read back the same geometry."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from edit3d.export.files import write_geometry
from edit3d.export.geometry import GaussianSplats, Mesh, PointCloud
from edit3d.export.gltf import srgb_to_linear
from edit3d.export.obj import read_obj
from edit3d.export.ply import colors_to_uchar, read_gaussian_splat_ply, read_ply


def _cloud(n: int = 50, normals: bool = True) -> PointCloud:
    rng = np.random.default_rng(3)
    normal = rng.normal(size=(n, 3))
    return PointCloud(
        points=rng.normal(size=(n, 3)) * 5.0,
        colors=rng.uniform(size=(n, 3)),
        normals=normal / np.linalg.norm(normal, axis=1, keepdims=True) if normals else None,
    )


def _tetrahedron() -> Mesh:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32) + 2.5
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.25, 0.75]], dtype=np.float32)
    return Mesh(vertices, faces, colors)


def test_point_cloud_ply_round_trips_through_own_reader_and_plyfile(tmp_path):
    cloud = _cloud()
    path = write_geometry(tmp_path / "cloud.ply", cloud)
    ours = read_ply(path)["vertex"]
    np.testing.assert_array_equal(np.stack([ours[a] for a in "xyz"], 1), cloud.points)
    np.testing.assert_array_equal(np.stack([ours[a] for a in ("nx", "ny", "nz")], 1), cloud.normals)
    rgb = np.stack([ours[c] for c in ("red", "green", "blue")], 1)
    np.testing.assert_array_equal(rgb, colors_to_uchar(cloud.colors))

    plyfile = pytest.importorskip("plyfile")
    data = plyfile.PlyData.read(str(path))
    assert not data.text and data.byte_order == "<"
    vertex = data["vertex"]
    np.testing.assert_array_equal(np.stack([vertex[a] for a in "xyz"], 1), cloud.points)
    np.testing.assert_array_equal(np.stack([vertex[c] for c in ("red", "green", "blue")], 1), rgb)


def test_mesh_ply_is_read_by_trimesh_with_same_vertices_faces_colours(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh = _tetrahedron()
    path = write_geometry(tmp_path / "mesh.ply", mesh)
    ours = read_ply(path)
    np.testing.assert_array_equal(ours["face"]["vertex_indices"], mesh.faces)
    loaded = trimesh.load(path, process=False)
    np.testing.assert_array_equal(np.asarray(loaded.vertices, np.float32), mesh.vertices)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], colors_to_uchar(mesh.colors))


def test_ply_bytes_are_exactly_header_plus_packed_records(tmp_path):
    cloud = _cloud(n=3, normals=False)
    raw = write_geometry(tmp_path / "c.ply", cloud).read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in header
    assert b"element vertex 3" in header
    rgb = colors_to_uchar(cloud.colors)
    expected = b"".join(
        struct.pack("<fffBBB", *p, *c) for p, c in zip(cloud.points, rgb, strict=True)
    )
    assert body == expected


def test_glb_is_spec_shaped_and_trimesh_reads_vertices_colours_faces(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh = _tetrahedron()
    path = write_geometry(tmp_path / "mesh.glb", mesh)
    raw = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", raw, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(raw))
    json_len, json_type = struct.unpack_from("<II", raw, 12)
    assert json_type == 0x4E4F534A and json_len % 4 == 0
    document = json.loads(raw[20 : 20 + json_len])
    position = document["accessors"][
        document["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
    ]
    assert position["min"] == pytest.approx(mesh.vertices.min(0).tolist())
    assert position["max"] == pytest.approx(mesh.vertices.max(0).tolist())

    scene = trimesh.load(path, process=False)
    loaded = next(iter(scene.geometry.values()))
    np.testing.assert_allclose(loaded.vertices, mesh.vertices)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    # trimesh hands back COLOR_0 as stored (linear, as glTF prescribes) in uint8.
    expected = np.round(srgb_to_linear(mesh.colors) * 255)
    np.testing.assert_allclose(loaded.visual.vertex_colors[:, :3], expected, atol=1)


def test_point_cloud_glb_loads_as_points(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    cloud = _cloud(normals=False)
    scene = trimesh.load(write_geometry(tmp_path / "p.glb", cloud), process=False)
    loaded = next(iter(scene.geometry.values()))
    assert isinstance(loaded, trimesh.PointCloud)
    np.testing.assert_allclose(loaded.vertices, cloud.points)


def test_obj_round_trips_mesh_and_trimesh_reads_it(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh = _tetrahedron()
    path = write_geometry(tmp_path / "mesh.obj", mesh)
    back = read_obj(path)
    assert isinstance(back, Mesh)
    np.testing.assert_allclose(back.vertices, mesh.vertices)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    np.testing.assert_allclose(back.colors, mesh.colors, atol=1e-6)
    loaded = trimesh.load(path, process=False)
    np.testing.assert_allclose(loaded.vertices, mesh.vertices)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)


def test_gaussian_splat_ply_layout_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n = 7
    splats = GaussianSplats(
        means=rng.normal(size=(n, 3)),
        scales_log=rng.normal(size=(n, 3)),
        quats_wxyz=rng.normal(size=(n, 4)),
        opacities_logit=rng.normal(size=n),
        sh_dc=GaussianSplats.dc_from_rgb(rng.uniform(size=(n, 3))),
        sh_rest=rng.normal(size=(n, 15, 3)),
    )
    path = write_geometry(tmp_path / "splat.ply", splats)
    header = path.read_bytes().split(b"end_header", 1)[0].decode()
    names = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:54] == [f"f_rest_{i}" for i in range(45)]
    assert names[54:] == [
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]
    vertex = read_ply(path)["vertex"]
    # channel-major: f_rest_0..14 are red's 15 coefficients
    np.testing.assert_array_equal(vertex["f_rest_1"], splats.sh_rest[:, 1, 0].astype(np.float32))
    np.testing.assert_array_equal(vertex["f_rest_15"], splats.sh_rest[:, 0, 1].astype(np.float32))
    back = read_gaussian_splat_ply(path)
    for field in ("means", "scales_log", "quats_wxyz", "opacities_logit", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(back, field), getattr(splats, field))


def test_unknown_format_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match="file_format"):
        write_geometry(tmp_path / "x.stl", _cloud())


def test_read_ply_reads_ascii_files(tmp_path) -> None:
    """ASCII PLY, as ns-process-data writes a capture's sparse points (plus a face list)."""
    header = (
        "ply\nformat ascii 1.0\ncomment sparse points\nelement vertex 2\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uint8 red\nproperty uint8 green\nproperty uint8 blue\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
    )
    path = tmp_path / "ascii.ply"
    path.write_text(header + "1.000000 -2.5 3e-1 255 0 7\n4 5 6 1 2 3\n3 0 1 1\n")
    ply = read_ply(path)
    vertex = ply["vertex"]
    np.testing.assert_array_equal(vertex["y"], np.array([-2.5, 5.0], np.float32))
    assert vertex["z"].dtype == np.float32 and vertex["z"][0] == np.float32(0.3)
    np.testing.assert_array_equal(vertex["red"], np.array([255, 1], np.uint8))
    assert vertex["blue"].dtype == np.uint8
    np.testing.assert_array_equal(ply["face"]["vertex_indices"], [[0, 1, 1]])
    path.write_text(header + "1 2 3 4 5 6\n")
    with pytest.raises(ValueError, match="ends before"):
        read_ply(path)
