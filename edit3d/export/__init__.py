"""Point clouds, meshes and files from a field, in the dataset's world frame."""

from edit3d.export.files import FORMATS, write_geometry
from edit3d.export.geometry import GaussianSplats, Mesh, PointCloud
from edit3d.export.mesh import MeshConfig, export_mesh
from edit3d.export.pointcloud import PointCloudConfig, export_point_cloud
from edit3d.export.sampling import CropBox, default_crop

__all__ = [
    "FORMATS",
    "CropBox",
    "GaussianSplats",
    "Mesh",
    "MeshConfig",
    "PointCloud",
    "PointCloudConfig",
    "default_crop",
    "export_mesh",
    "export_point_cloud",
    "write_geometry",
]
