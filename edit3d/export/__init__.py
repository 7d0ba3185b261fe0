"""Point clouds, meshes and files from a field, in the dataset's world frame.

Names are imported on first use (PEP 562), so registering the `edit3d export` parser does
not pay for torch.
"""

from __future__ import annotations

from edit3d.lazy import lazy_exports

_EXPORTS = {
    "FORMATS": "edit3d.export.files",
    "write_geometry": "edit3d.export.files",
    "GaussianSplats": "edit3d.export.geometry",
    "Mesh": "edit3d.export.geometry",
    "PointCloud": "edit3d.export.geometry",
    "MeshConfig": "edit3d.export.mesh",
    "export_mesh": "edit3d.export.mesh",
    "PointCloudConfig": "edit3d.export.pointcloud",
    "export_point_cloud": "edit3d.export.pointcloud",
    "CropBox": "edit3d.export.sampling",
    "default_crop": "edit3d.export.sampling",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("edit3d.export", _EXPORTS)
