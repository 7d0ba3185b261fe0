"""`edit3d segment` and `edit3d eval segmentation`: ADSS from the command line."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from edit3d.cli_options import CliError, eval_subcommands, fraction, positive_int

_PROFILE_HELP = "real: published weights; tiny: random miniatures (pipeline check only)"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    _add_segment(subparsers)
    _add_eval_segmentation(eval_subcommands(subparsers))


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=("real", "tiny"), default="real", help=_PROFILE_HELP)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cpu")
    parser.add_argument(
        "--sam", choices=("sam-vit-h", "sam-vit-b"), default="sam-vit-h", help="SAM weights"
    )
    parser.add_argument(
        "--points-per-side",
        type=positive_int,
        default=None,
        help="SAM prompt grid (default 32; tiny 8)",
    )
    parser.add_argument("--threshold", type=fraction, default=0.6, help="heatmap threshold, 0-1")
    parser.add_argument(
        "--layer", type=int, default=None, help="BLIP text layer for Grad-CAM (default 6)"
    )


def _add_segment(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment", help="ADSS masks for text queries on one image (heatmaps, masks, report)"
    )
    parser.add_argument("image", type=Path, metavar="IMAGE", help="image file")
    parser.add_argument("--query", action="append", default=[], help="what to edit (repeatable)")
    parser.add_argument(
        "--keep-query", action="append", default=[], help="what to keep (inverse mode)"
    )
    captions = parser.add_mutually_exclusive_group()
    captions.add_argument("--caption", default=None, help="use this caption instead of BLIP's")
    captions.add_argument("--no-caption", action="store_true", help="no caption prefix")
    parser.add_argument("--out", type=Path, required=True, help="folder for PNGs + report.json")
    _add_model_options(parser)
    parser.set_defaults(func=run_segment)


def _add_eval_segmentation(eval_subcommands: argparse._SubParsersAction) -> None:
    parser = eval_subcommands.add_parser(
        "segmentation", help="per-query IoU and mIoU of ADSS against ground-truth masks"
    )
    parser.add_argument("--images", type=Path, required=True, help="folder of images")
    parser.add_argument(
        "--masks", type=Path, required=True, help="folder with one subfolder of masks per query"
    )
    parser.add_argument(
        "--query",
        action="append",
        required=True,
        help="TEXT or TEXT=MASK_FOLDER (repeatable); the folder defaults to TEXT",
    )
    parser.add_argument("--no-caption", action="store_true", help="queries without captions")
    parser.add_argument(
        "--compare-captions", action="store_true", help="run with and without captions"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    _add_model_options(parser)
    parser.set_defaults(func=run_eval_segmentation)


def _segmenter(args: argparse.Namespace):  # -> AdssSegmenter; heavy import kept local
    from dataclasses import replace

    from edit3d.segmentation.adss import AdssConfig, AdssSegmenter
    from edit3d.segmentation.gradcam import GradCamConfig
    from edit3d.segmentation.proposals import TINY_SAM_MASKS, SamMaskConfig

    sam = None
    if args.points_per_side is not None:
        base = TINY_SAM_MASKS if args.profile == "tiny" else SamMaskConfig()
        sam = replace(base, points_per_side=args.points_per_side)
    config = AdssConfig(
        sam_model=args.sam,
        sam=sam,
        threshold=args.threshold,
        gradcam=GradCamConfig(layer=args.layer),
    )
    return AdssSegmenter(args.profile, config=config, device=args.device)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "query"


def run_segment(args: argparse.Namespace) -> int:
    from edit3d.segmentation.image_io import read_image, write_gray, write_overlay

    if not args.query and not args.keep_query:
        raise CliError("no region given", "add at least one --query or --keep-query")
    if not args.image.is_file():
        raise CliError(f"image {args.image} does not exist", "check the path")
    caption = "" if args.no_caption else args.caption
    segmenter = _segmenter(args)
    segmenter.require_weights(with_caption=caption is None)
    image = read_image(args.image)
    preview = segmenter.preview(image, args.query, args.keep_query, caption=caption)
    args.out.mkdir(parents=True, exist_ok=True)
    report = preview.summary()
    for i, query in enumerate(preview.heatmaps):
        stem = f"{i:02d}_{_slug(query)}"
        write_gray(args.out / f"heatmap_{stem}.png", preview.heatmaps[query])
        write_gray(args.out / f"match_{stem}.png", preview.matches[query].mask)
        write_overlay(args.out / f"overlay_heatmap_{stem}.png", image, preview.heatmaps[query])
        report["queries"][query]["files"] = [
            f"heatmap_{stem}.png",
            f"match_{stem}.png",
            f"overlay_heatmap_{stem}.png",
        ]
    write_gray(args.out / "edit_mask.png", preview.edit_mask)
    write_gray(args.out / "soft_mask.png", preview.soft_mask)
    write_overlay(args.out / "overlay_mask.png", image, preview.soft_mask)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _print_preview(report)
    return 0


def _print_preview(report: dict) -> None:
    print(f"caption: {report['caption']!r}")
    for query, row in report["queries"].items():
        runner = row["runner_up"]
        second = f"runner-up #{runner['sam_mask']} IoU {runner['iou']:.3f}" if runner else "none"
        chosen = "thresholded map (fallback)" if row["fallback"] else f"SAM #{row['sam_mask']}"
        print(f"{row['role']:4s} {query!r}: {chosen}, IoU {row['iou']:.3f}; {second}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")


def _parse_queries(values: list[str]) -> dict[str, str]:
    queries: dict[str, str] = {}
    for value in values:
        text, _, folder = value.partition("=")
        if not text.strip():
            raise CliError(f"--query {value!r} has no text", "give TEXT or TEXT=MASK_FOLDER")
        queries[text.strip()] = folder.strip() or text.strip()
    return queries


def run_eval_segmentation(args: argparse.Namespace) -> int:
    from edit3d.segmentation.evaluation import evaluate_segmentation

    queries = _parse_queries(args.query)
    for folder, option in ((args.images, "--images"), (args.masks, "--masks")):
        if not folder.is_dir():
            raise CliError(f"{option} {folder} is not a folder", "check the path")
    segmenter = _segmenter(args)
    modes = (True, False) if args.compare_captions else (not args.no_caption,)
    segmenter.require_weights(with_caption=any(modes))
    runs = [
        evaluate_segmentation(segmenter, args.images, args.masks, queries, with_caption=mode)
        for mode in modes
    ]
    for run in runs:
        label = "with captions" if run.with_caption else "without captions"
        cells = "  ".join(f"{q}: {iou:.4f}" for q, iou in run.per_query.items())
        print(f"ADSS {label}: {cells}  mIoU: {run.miou:.4f}")
        if run.missing:
            print(f"  skipped {len(run.missing)} image/query pairs without ground truth")
    if runs[0].note:
        print(f"NOTE: {runs[0].note}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([r.as_dict() for r in runs], indent=2) + "\n")
    return 0
