"""One entry point for writing exported geometry by format name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edit3d.export.geometry import GaussianSplats, Mesh, PointCloud
from edit3d.export.gltf import write_mesh_glb, write_point_cloud_glb
from edit3d.export.obj import write_mesh_obj, write_point_cloud_obj
from edit3d.export.ply import write_gaussian_splat_ply, write_mesh_ply, write_point_cloud_ply

FileFormat = Literal["ply", "obj", "glb"]
FORMATS: tuple[str, ...] = ("ply", "obj", "glb")


def write_geometry(
    path: Path, geometry: PointCloud | Mesh | GaussianSplats, file_format: str | None = None
) -> Path:
    """Writes `geometry` as PLY, OBJ or GLB (format from the argument or the file suffix)."""
    path = Path(path)
    fmt = (file_format or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"file_format must be one of {FORMATS}, got {fmt!r}")
    if isinstance(geometry, GaussianSplats):
        if fmt != "ply":
            raise ValueError(f"file_format: Gaussian splats are written as ply only, got {fmt!r}")
        return write_gaussian_splat_ply(path, geometry)
    writers = {
        (PointCloud, "ply"): write_point_cloud_ply,
        (PointCloud, "obj"): write_point_cloud_obj,
        (PointCloud, "glb"): write_point_cloud_glb,
        (Mesh, "ply"): write_mesh_ply,
        (Mesh, "obj"): write_mesh_obj,
        (Mesh, "glb"): write_mesh_glb,
    }
    return writers[(type(geometry), fmt)](path, geometry)
