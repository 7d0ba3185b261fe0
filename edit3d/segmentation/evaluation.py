"""Per-query IoU and mIoU of ADSS against ground-truth masks (the paper's Tab. 3 protocol).

Layout: `images/<name>.<ext>` and `masks/<mask folder>/<name>.png`, one mask folder per
query (a query's mask folder defaults to the query text). Pairs without a ground-truth file
are skipped and listed. The paper compares ADSS with and without the caption prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edit3d.segmentation.adss import AdssSegmenter
from edit3d.segmentation.image_io import list_images, read_image, read_mask
from edit3d.segmentation.matching import mask_iou

TINY_NOTE = "tiny random networks: these numbers are a pipeline check, not a measurement of ADSS"


@dataclass(frozen=True)
class ImageScore:
    """ADSS on one image."""

    image: str
    """Image file name."""
    caption: str
    """Caption prefixed to the queries ("" without captions)."""
    ious: dict[str, float]
    """Per query with a ground-truth mask: IoU of the chosen mask."""


@dataclass(frozen=True)
class SegmentationEvaluation:
    """Scores of one evaluation run."""

    with_caption: bool
    """Whether queries were prefixed with a caption."""
    profile: str
    """"real" or "tiny" (tiny = pipeline check only)."""
    per_query: dict[str, float]
    """Mean IoU over images, per query."""
    images: list[ImageScore] = field(default_factory=list)
    """Per-image detail."""
    missing: list[str] = field(default_factory=list)
    """"image: query" pairs skipped for lack of a ground-truth mask."""

    @property
    def miou(self) -> float:
        """Mean of the per-query IoUs (NaN when no query could be scored)."""
        return float(np.mean(list(self.per_query.values()))) if self.per_query else float("nan")

    @property
    def note(self) -> str:
        return TINY_NOTE if self.profile == "tiny" else ""

    def as_dict(self) -> dict:
        return {
            "with_caption": self.with_caption,
            "profile": self.profile,
            "note": self.note,
            "per_query_iou": self.per_query,
            "miou": self.miou,
            "images": [
                {"image": s.image, "caption": s.caption, "iou": s.ious} for s in self.images
            ],
            "missing": self.missing,
        }


def evaluate_segmentation(
    segmenter: AdssSegmenter,
    images_dir: Path,
    masks_dir: Path,
    queries: Mapping[str, str],
    *,
    with_caption: bool = True,
    captions: Mapping[str, str] | None = None,
) -> SegmentationEvaluation:
    """Score ADSS's chosen mask per query (`queries`: query text -> mask folder name).

    `captions` (image file name -> caption) replaces BLIP's captions where given, as the
    paper's refined-caption experiment does; ignored without captions.
    """
    if not queries:
        raise ValueError("queries must name at least one query")
    images = list_images(Path(images_dir))
    if not images:
        raise ValueError(f"images_dir {images_dir} holds no images")
    scores: list[ImageScore] = []
    missing: list[str] = []
    for path in images:
        image = read_image(path)
        shape = image.shape[:2]
        truth = {}
        for query, folder in queries.items():
            mask_path = Path(masks_dir) / folder / f"{path.stem}.png"
            if mask_path.is_file():
                truth[query] = read_mask(mask_path, size=shape)
            else:
                missing.append(f"{path.name}: {query}")
        if not truth:
            continue
        caption = (captions or {}).get(path.name) if with_caption else ""
        preview = segmenter.preview(image, list(truth), caption=caption)
        ious = {q: mask_iou(preview.matches[q].mask, truth[q]) for q in truth}
        scores.append(ImageScore(path.name, preview.caption, ious))
    per_query = {
        q: float(np.mean([s.ious[q] for s in scores if q in s.ious]))
        for q in queries
        if any(q in s.ious for s in scores)
    }
    return SegmentationEvaluation(with_caption, segmenter.profile, per_query, scores, missing)
