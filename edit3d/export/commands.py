"""`edit3d export`: a node's field as a point cloud, mesh or 3DGS file, in the world frame."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edit3d.cli_options import (
    CliError,
    add_device_option,
    add_workspace_option,
    fraction,
    open_workspace,
    positive_int,
    resolve_device,
)
from edit3d.export.files import FORMATS


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="point cloud, mesh or Gaussian splats of a turn as PLY / OBJ / GLB (dataset world "
        "frame)",
        description="Sample a node's field (default: head) into a point cloud (rendered depth "
        "of the training cameras) or a mesh (TSDF fusion + marching cubes), in the dataset's "
        "world frame, and write it for other tools. A splatting backend's Gaussians export "
        "as-is (--kind splats) in the reference 3DGS PLY layout.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    add_workspace_option(source, required=False)
    source.add_argument("--checkpoint", type=Path, help="a field checkpoint file instead")
    parser.add_argument("--turn", help="node to export (default: head)")
    parser.add_argument(
        "--kind",
        choices=("pointcloud", "mesh", "splats", "nerfstudio-run"),
        default="pointcloud",
        help="what to export; splats: the field's Gaussians as a 3DGS PLY (splatting "
        "backends only); nerfstudio-run: an ns-train output folder under --out (a folder) "
        "that ns-viewer, ns-render and ns-export open",
    )
    parser.add_argument("--format", choices=FORMATS, help="file format (default: from --out)")
    parser.add_argument("--out", type=Path, required=True, help="output file")
    parser.add_argument("--budget", type=positive_int, default=1_000_000, help="point budget")
    parser.add_argument(
        "--crop",
        type=float,
        nargs=6,
        metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
        help="world-frame box to keep (default: the field's scene bounds)",
    )
    parser.add_argument("--max-views", type=positive_int, help="render at most this many views")
    parser.add_argument(
        "--render-long-side", type=positive_int, help="render size (default: dataset)"
    )
    parser.add_argument("--resolution", type=positive_int, default=192, help="mesh voxels per side")
    parser.add_argument("--accumulation", type=fraction, default=0.5, help="opacity threshold, 0-1")
    parser.add_argument("--seed", type=int, default=0, help="seed of the point subsampling")
    add_device_option(parser)
    parser.set_defaults(func=run_export)


def _field(args: argparse.Namespace, device: str) -> Any:
    if args.checkpoint is not None:
        from edit3d.field import field_from_checkpoint

        return field_from_checkpoint(args.checkpoint, device=device)
    return open_workspace(args.workspace, device=device).load_field(args.turn)


def _write_run(args: argparse.Namespace, field: Any) -> int:
    from edit3d.field import write_nerfstudio_run

    node = args.turn or ("checkpoint" if args.checkpoint is not None else "head")
    config_yml = write_nerfstudio_run(field, args.out, timestamp=node)
    print(f"wrote {config_yml.parent} (open with: ns-viewer --load-config {config_yml})")
    return 0


def _write_splats(args: argparse.Namespace, field: Any) -> int:
    from edit3d.export.files import write_geometry
    from edit3d.export.splats import world_gaussians

    try:
        splats = world_gaussians(field)
    except ValueError as error:  # a backend without Gaussians: a usage error, not a defect
        raise CliError(str(error)) from None
    path = write_geometry(args.out, splats, args.format or "ply")
    print(f"wrote {path} ({len(splats.means)} Gaussians, 3DGS PLY, dataset world frame)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from edit3d.editing.commands import ProgressBar
    from edit3d.export.files import write_geometry
    from edit3d.export.mesh import MeshConfig, export_mesh
    from edit3d.export.pointcloud import PointCloudConfig, export_point_cloud
    from edit3d.export.sampling import CropBox

    field = _field(args, resolve_device(args.device))
    if args.kind == "nerfstudio-run":
        return _write_run(args, field)
    if args.kind == "splats":
        return _write_splats(args, field)
    crop = CropBox.from_values(args.crop) if args.crop else None
    with ProgressBar() as bars:
        if args.kind == "mesh":
            config = MeshConfig(
                resolution=args.resolution,
                accumulation_threshold=args.accumulation,
                max_views=args.max_views,
                render_long_side=args.render_long_side,
            )
            geometry = export_mesh(field, config, crop=crop, progress=bars)
            count = f"{len(geometry.vertices)} vertices, {len(geometry.faces)} triangles"
        else:
            config = PointCloudConfig(
                num_points=args.budget,
                accumulation_threshold=args.accumulation,
                max_views=args.max_views,
                render_long_side=args.render_long_side,
                seed=args.seed,
            )
            geometry = export_point_cloud(field, config, crop=crop, progress=bars)
            count = f"{len(geometry)} points"
    path = write_geometry(args.out, geometry, args.format)
    print(f"wrote {path} ({count}, dataset world frame)")
    return 0
