"""`edit3d sample-scene OUT`: write the deterministic sample dataset."""

from __future__ import annotations

import argparse

from edit3d.scene.sample import MAX_RESOLUTION


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample-scene",
        help="write the seeded sample scene (nerfstudio format, with per-object masks and "
        "sparse points)",
    )
    parser.add_argument("out", metavar="OUT", help="folder to write (created if missing)")
    parser.add_argument("--views", type=int, default=36, help="cameras on the orbit (24-60)")
    parser.add_argument(
        "--resolution", type=int, default=64, help=f"image side in px (32-{MAX_RESOLUTION})"
    )
    parser.add_argument("--seed", type=int, default=0, help="layout and camera jitter seed")
    parser.add_argument(
        "--points",
        type=int,
        help="SfM-like sparse points to write to sparse_pc.ply (default: 4000; 0: none)",
    )
    parser.set_defaults(func=run_sample_scene)


def run_sample_scene(args: argparse.Namespace) -> int:
    from edit3d.scene.sample import make_sample_scene

    points = {} if args.points is None else {"num_points": args.points}
    scene = make_sample_scene(
        args.out, num_views=args.views, resolution=args.resolution, seed=args.seed, **points
    )
    ids = ", ".join(obj.id for obj in scene.objects)
    print(f"wrote {len(scene.views)} views to {scene.root} (objects: {ids})")
    return 0
