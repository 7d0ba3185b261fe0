"""Meshes from a field by TSDF fusion of rendered depth + marching cubes (world frame).

A voxel grid spans the crop box. For every rendered view each voxel centre is projected
into the image; its signed distance along the ray, ``depth(pixel) - |voxel - origin|``, is
truncated to ``[-trunc, trunc]`` and averaged over views (positive = in front of the
surface). Pixels whose rays hit nothing (low accumulation) carve their whole frustum as
free space, which removes floaters the depth maps never confirm. Voxels behind a surface
by more than `trunc` are left alone (occluded). Colours are averaged near the surface.
`skimage.measure.marching_cubes` extracts the zero level; faces are wound
counter-clockwise seen from outside, normals point outwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from edit3d.export.geometry import Mesh
from edit3d.export.sampling import CropBox, default_crop, pick_views, render_size
from edit3d.field.radiance import RadianceField, as_new_camera
from edit3d.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from edit3d.scene.cameras import CameraView


@dataclass(frozen=True)
class MeshConfig:
    """How to fuse a mesh from a field."""

    resolution: int = 192
    """Voxels along the crop box's longest side (memory grows with its cube)."""
    truncation_voxels: float = 3.0
    """Truncation distance of the TSDF, in voxels."""
    accumulation_threshold: float = 0.5
    """Pixels with less accumulated opacity count as empty space."""
    max_views: int | None = None
    """Fuse at most this many training views, spread evenly (None: all)."""
    render_long_side: int | None = None
    """Render each view with its longer side at most this many pixels (None: dataset size)."""
    min_component_fraction: float = 0.02
    """Drop connected pieces with fewer faces than this fraction of the mesh (floaters)."""

    def __post_init__(self) -> None:
        if self.resolution < 8:
            raise ValueError(f"resolution must be >= 8, got {self.resolution}")
        if self.truncation_voxels <= 0:
            raise ValueError(f"truncation_voxels must be > 0, got {self.truncation_voxels}")


class TsdfVolume:
    """A truncated signed distance volume with colour, integrated one depth map at a time."""

    def __init__(self, crop: CropBox, resolution: int, truncation_voxels: float) -> None:
        self.origin = np.asarray(crop.minimum, dtype=np.float64)
        self.voxel = float(crop.size.max()) / resolution
        self.shape = tuple(np.maximum(np.ceil(crop.size / self.voxel).astype(int), 2))
        self.trunc = truncation_voxels * self.voxel
        n = int(np.prod(self.shape))
        self.tsdf = torch.ones(n, dtype=torch.float32)
        self.weight = torch.zeros(n, dtype=torch.float32)
        self.color = torch.zeros((n, 3), dtype=torch.float32)
        self.color_weight = torch.zeros(n, dtype=torch.float32)
        axes = [self.origin[i] + (np.arange(self.shape[i]) + 0.5) * self.voxel for i in range(3)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        self.centers = torch.from_numpy(grid)  # float64 world positions [N, 3]

    def integrate(
        self,
        view: CameraView,
        depth: np.ndarray,
        rgb: np.ndarray,
        accumulation: np.ndarray,
        accumulation_threshold: float,
    ) -> None:
        """Fuses one rendered view (depth along the ray, world units)."""
        height, width = depth.shape
        k = view.intrinsics.scaled_to(width, height)
        w2c = torch.from_numpy(np.linalg.inv(view.c2w))
        cam = self.centers @ w2c[:3, :3].T + w2c[:3, 3]
        z = -cam[:, 2]  # OpenGL camera looks down -Z
        in_front = z > 1e-6
        safe_z = torch.where(in_front, z, torch.ones_like(z))
        u = torch.floor(k.fx * cam[:, 0] / safe_z + k.cx).long()
        v = torch.floor(k.cy - k.fy * cam[:, 1] / safe_z).long()
        visible = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        index = torch.nonzero(visible).squeeze(1)
        pixel = v[index] * width + u[index]
        depth_t = torch.from_numpy(np.ascontiguousarray(depth, np.float64)).reshape(-1)[pixel]
        hit = torch.from_numpy(np.ascontiguousarray(accumulation)).reshape(-1)[pixel]
        hit = (hit > accumulation_threshold) & torch.isfinite(depth_t)
        distance = torch.linalg.norm(self.centers[index] - torch.from_numpy(view.c2w[:3, 3]), dim=1)
        sdf = torch.where(hit, depth_t - distance, torch.full_like(distance, self.trunc))
        update = sdf > -self.trunc
        index, sdf, pixel, hit = index[update], sdf[update], pixel[update], hit[update]
        value = torch.clamp(sdf / self.trunc, -1.0, 1.0).float()
        weight = self.weight[index]
        self.tsdf[index] = (self.tsdf[index] * weight + value) / (weight + 1.0)
        self.weight[index] = weight + 1.0
        near = hit & (sdf.abs() < self.trunc)
        colors = torch.from_numpy(np.ascontiguousarray(rgb, np.float32)).reshape(-1, 3)
        near_index = index[near]
        self.color[near_index] += colors[pixel[near]]
        self.color_weight[near_index] += 1.0

    def extract(self) -> Mesh:
        """Marching cubes on the fused volume; empty mesh if no surface was seen."""
        from skimage.measure import marching_cubes

        observed = self.weight.reshape(self.shape).numpy() > 0
        tsdf = _continue_signs(self.tsdf.reshape(self.shape).numpy(), observed)
        if not (tsdf.min() < 0 < tsdf.max()):
            return Mesh(np.zeros((0, 3)), np.zeros((0, 3), int), np.zeros((0, 3)))
        verts, faces, normals, _ = marching_cubes(
            tsdf, level=0.0, spacing=(self.voxel,) * 3, mask=observed, allow_degenerate=False
        )
        # skimage's normals follow the descending gradient; the TSDF grows outwards.
        world = verts + self.origin + 0.5 * self.voxel
        normals = -normals
        faces = _outward_winding(world, faces, normals)
        return Mesh(world, faces, self._vertex_colors(verts / self.voxel), normals)

    def _vertex_colors(self, grid_coords: np.ndarray) -> np.ndarray:
        """Trilinear colour at vertices, averaging only voxels that saw a colour."""
        from scipy.ndimage import map_coordinates

        weight = self.color_weight.reshape(self.shape).numpy()
        total = self.color.reshape(*self.shape, 3).numpy()
        coords = grid_coords.T
        support = map_coordinates((weight > 0).astype(np.float32), coords, order=1, mode="nearest")
        colors = np.empty((len(grid_coords), 3), dtype=np.float32)
        mean = np.divide(
            total, weight[..., None], out=np.zeros_like(total), where=weight[..., None] > 0
        )
        for channel in range(3):
            colors[:, channel] = map_coordinates(
                mean[..., channel], coords, order=1, mode="nearest"
            )
        return np.clip(colors / np.maximum(support, 1e-6)[:, None], 0.0, 1.0)


def _continue_signs(tsdf: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Unobserved voxels (e.g. deep inside objects) take the sign of the nearest observed
    one at full truncation, so the boundary of what was seen creates no surface."""
    from scipy.ndimage import distance_transform_edt

    if observed.all() or not observed.any():
        return tsdf
    nearest = distance_transform_edt(~observed, return_distances=False, return_indices=True)
    filled = np.where(tsdf[tuple(nearest)] < 0, -1.0, 1.0).astype(tsdf.dtype)
    return np.where(observed, tsdf, filled)


def _outward_winding(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Flips the winding if most faces' geometric normals disagree with the vertex normals."""
    if len(faces) == 0:
        return faces
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    geometric = np.cross(b - a, c - a)
    agreement = np.sum(geometric * normals[faces].sum(axis=1), axis=1)
    return faces if np.mean(agreement > 0) >= 0.5 else faces[:, ::-1].copy()


def remove_small_components(mesh: Mesh, min_fraction: float) -> Mesh:
    """The mesh without connected pieces smaller than `min_fraction` of its faces."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if min_fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    n = len(mesh.vertices)
    edges = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    face_labels = labels[mesh.faces[:, 0]]
    sizes = np.bincount(face_labels, minlength=labels.max() + 1)
    keep_faces = sizes[face_labels] >= min_fraction * len(mesh.faces)
    faces = mesh.faces[keep_faces]
    used = np.unique(faces)
    remap = np.full(n, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    normals = None if mesh.normals is None else mesh.normals[used]
    return Mesh(mesh.vertices[used], remap[faces], mesh.colors[used], normals)


def export_mesh(
    field: RadianceField,
    config: MeshConfig | None = None,
    *,
    views: Sequence[CameraView] | None = None,
    crop: CropBox | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> Mesh:
    """Fuses the field's rendered depth into a coloured world-frame triangle mesh."""
    config = config or MeshConfig()
    crop = crop or default_crop(field)
    chosen = pick_views(views if views is not None else field.views, config.max_views)
    volume = TsdfVolume(crop, config.resolution, config.truncation_voxels)
    for index, view in enumerate(chosen):
        if cancel is not None:
            cancel.raise_if_cancelled()
        width, height = render_size(view, config.render_long_side)
        result = field.render(as_new_camera(view), width=width, height=height)
        volume.integrate(
            view,
            np.asarray(result.depth, np.float64).reshape(height, width),
            np.asarray(result.rgb, np.float32).reshape(height, width, 3),
            np.asarray(result.accumulation, np.float32).reshape(height, width),
            config.accumulation_threshold,
        )
        progress(ProgressEvent("export", index + 1, len(chosen) + 1, message=f"fused {view.name}"))
    mesh = remove_small_components(volume.extract(), config.min_component_fraction)
    progress(ProgressEvent("export", len(chosen) + 1, len(chosen) + 1, message="marching cubes"))
    return mesh
