"""ADSS: attention-driven open-set segmentation (paper Sec. 3.2, Fig. 4).

SAM proposes class-agnostic masks; BLIP captions the image; for each query, Grad-CAM on
BLIP's image-text matching of "caption query" gives a heatmap; the heatmap thresholded at
0.6 picks the SAM mask with the largest IoU. Edit queries are united, keep queries are
subtracted (inverse mode: keep queries alone give M = 1 - M_keep), and the result gets
Gaussian-smoothed edges for fusion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from edit3d.segmentation.attention_maps import threshold_heatmap
from edit3d.segmentation.caption import CaptionConfig
from edit3d.segmentation.gradcam import GradCamConfig
from edit3d.segmentation.matching import MaskMatch, combine_edit_mask, match_sam_mask
from edit3d.segmentation.proposals import TINY_SAM_MASKS, SamMaskConfig
from edit3d.segmentation.soft_mask import edge_sigma_for, soften_mask

log = logging.getLogger(__name__)

Profile = Literal["real", "tiny"]

Captioner = Callable[[np.ndarray], str]
"""image [H, W, 3] -> caption."""
AttentionMapper = Callable[[np.ndarray, str, str], np.ndarray]
"""(image, caption, query) -> heatmap float32 [H, W] in [0, 1]."""
MaskProposer = Callable[[np.ndarray], list[np.ndarray]]
"""image -> class-agnostic masks, each bool [H, W]."""


class QuerySpec(Protocol):
    """What a mask provider reads from a turn's spec (`edit3d.editing.turns.TurnSpec`)."""

    edit_queries: Sequence[str]
    keep_queries: Sequence[str]
    caption: str | None


MaskProvider = Callable[[str, np.ndarray, Any], np.ndarray]
"""(view_name, prerender_image, spec) -> soft mask float32 [H, W] in [0, 1]."""


@dataclass(frozen=True)
class AdssConfig:
    """Settings of the whole ADSS pipeline."""

    sam_model: Literal["sam-vit-h", "sam-vit-b"] = "sam-vit-h"
    """SAM weights for proposals (the paper uses ViT-H)."""
    sam: SamMaskConfig | None = None
    """Automatic mask generator settings; None = SAM's defaults (tiny profile: thresholds 0)."""
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    """Caption decoding (LAVIS: prompt "a picture of ", 3 beams, 10-30 tokens)."""
    gradcam: GradCamConfig = field(default_factory=GradCamConfig)
    """Which text layer's cross-attention is read, token limit, heatmap blur."""
    threshold: float = 0.6
    """Heatmap value from which a pixel belongs to the query's attention region."""
    min_match_iou: float = 0.0
    """A best SAM IoU at or below this falls back to the thresholded heatmap (with a warning)."""
    edge_sigma_px: float = 4.0
    """Gaussian sigma of the soft mask's edges, in pixels at a 512 px long side (scaled)."""

    def __post_init__(self) -> None:
        if self.sam_model not in ("sam-vit-h", "sam-vit-b"):
            raise ValueError(
                f"sam_model must be 'sam-vit-h' or 'sam-vit-b', got {self.sam_model!r}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 <= self.min_match_iou < 1.0:
            raise ValueError(f"min_match_iou must be in [0, 1), got {self.min_match_iou}")
        if self.edge_sigma_px < 0:
            raise ValueError(f"edge_sigma_px must be >= 0, got {self.edge_sigma_px}")


@dataclass(frozen=True)
class MaskPreview:
    """Everything a user needs to judge a mask before committing a long turn."""

    caption: str
    """Caption prefixed to every query ("" when captions were off)."""
    heatmaps: dict[str, np.ndarray]
    """Per query: float32 [H, W] Grad-CAM heatmap in [0, 1]."""
    matches: dict[str, MaskMatch]
    """Per query: chosen SAM mask, its IoU with the thresholded heatmap, the runner-up."""
    edit_mask: np.ndarray
    """bool [H, W]: union of edit matches (or everything) minus the keep matches."""
    soft_mask: np.ndarray
    """float32 [H, W] in [0, 1]: edit_mask with Gaussian-smoothed edges (1 = edit)."""
    edit_queries: tuple[str, ...]
    """Queries naming what to edit."""
    keep_queries: tuple[str, ...]
    """Queries naming what to keep (inverse mode)."""
    profile: Profile
    """"tiny" marks random pipeline-check networks: such masks mean nothing."""
    num_proposals: int = 0
    """How many SAM masks were proposed."""
    warnings: tuple[str, ...] = ()
    """Fallbacks and other things a user should know."""

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers of the preview (no images): caption, per-query choice, warnings."""
        queries = {}
        for query, match in self.matches.items():
            runner_up = match.runner_up
            queries[query] = {
                "role": "edit" if query in self.edit_queries else "keep",
                "iou": match.iou,
                "sam_mask": match.index,
                "runner_up": None
                if runner_up is None
                else {"sam_mask": runner_up.index, "iou": runner_up.iou},
                "fallback": match.fallback,
            }
        return {
            "profile": self.profile,
            "caption": self.caption,
            "sam_masks": self.num_proposals,
            "queries": queries,
            "edit_fraction": float(self.edit_mask.mean()),
            "warnings": list(self.warnings),
        }


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    return image


def _check_queries(edit_queries: Sequence[str], keep_queries: Sequence[str]) -> None:
    for name, queries in (("edit_queries", edit_queries), ("keep_queries", keep_queries)):
        if isinstance(queries, str):
            raise ValueError(f"{name} must be a sequence of strings, got the string {queries!r}")
        for query in queries:
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"{name} must hold non-empty strings, got {query!r}")
    both = set(edit_queries) & set(keep_queries)
    if both:
        raise ValueError(f"queries both edited and kept: {sorted(both)}")


class AdssSegmenter:
    """Open-set part segmentation from text queries (ADSS).

    The three networks (SAM, BLIP captioner, BLIP ITM) load from `edit3d.models` on first
    use; `captioner`, `attention` and `proposer` replace them (for tests and experiments).
    """

    def __init__(
        self,
        profile: Profile = "real",
        *,
        config: AdssConfig | None = None,
        device: str = "cpu",
        seed: int = 0,
        local_paths: Mapping[str, Path] | None = None,
        captioner: Captioner | None = None,
        attention: AttentionMapper | None = None,
        proposer: MaskProposer | None = None,
    ) -> None:
        if profile not in ("real", "tiny"):
            raise ValueError(f"profile must be 'real' or 'tiny', got {profile!r}")
        self.profile: Profile = profile
        self.config = config or AdssConfig()
        self.device = device
        self.seed = seed
        self.local_paths = dict(local_paths or {})
        self._captioner = captioner
        self._attention = attention
        self._proposer = proposer

    # -- the three networks, loaded lazily -------------------------------------------------

    def needed_models(self, *, with_caption: bool = True) -> tuple[str, ...]:
        """Registered names of the networks this segmenter will load (none given in place)."""
        names = []
        if with_caption and self._captioner is None:
            names.append("blip-caption-large")
        if self._attention is None:
            names.append("blip-itm-large-coco")
        if self._proposer is None:
            names.append(self.config.sam_model)
        return tuple(names)

    def require_weights(self, *, with_caption: bool = True) -> None:
        """ModelNotAvailable now, naming the first network without real weights, rather than
        at the first view after minutes of pre-rendering (nothing is loaded here)."""
        if self.profile == "tiny":
            return
        from edit3d.models.registry import resolve_path

        for name in self.needed_models(with_caption=with_caption):
            resolve_path(name, self.local_paths.get(name))

    def _load(self, name: str) -> Any:
        from edit3d.models.registry import load_model

        return load_model(
            name,
            self.profile,
            device=self.device,
            seed=self.seed,
            local_path=self.local_paths.get(name),
        )

    @property
    def captioner(self) -> Captioner:
        if self._captioner is None:
            from edit3d.segmentation.caption import BlipCaptioner

            bundle = self._load("blip-caption-large")
            self._captioner = BlipCaptioner(bundle.model, bundle.processor, self.config.caption)
        return self._captioner

    @property
    def attention(self) -> AttentionMapper:
        if self._attention is None:
            from edit3d.segmentation.gradcam import BlipGradCam

            bundle = self._load("blip-itm-large-coco")
            gradcam = BlipGradCam(bundle.model, bundle.processor, self.config.gradcam)
            self._attention = gradcam.heatmap
        return self._attention

    @property
    def proposer(self) -> MaskProposer:
        if self._proposer is None:
            from edit3d.segmentation.proposals import SamMaskProposer

            sam_config = self.config.sam
            if sam_config is None:
                sam_config = TINY_SAM_MASKS if self.profile == "tiny" else SamMaskConfig()
            self._proposer = SamMaskProposer(self._load(self.config.sam_model), sam_config)
        return self._proposer

    # -- the method ------------------------------------------------------------------------

    def caption(self, image: np.ndarray) -> str:
        """BLIP's caption of `image` (LAVIS decoding)."""
        return self.captioner(_check_image(image))

    def preview(
        self,
        image: np.ndarray,
        edit_queries: Sequence[str] = (),
        keep_queries: Sequence[str] = (),
        caption: str | None = None,
    ) -> MaskPreview:
        """Segment `image` for the queries; `caption` None = generate, "" = no caption prefix."""
        image = _check_image(image)
        _check_queries(edit_queries, keep_queries)
        shape = image.shape[:2]
        queries = (*edit_queries, *keep_queries)
        if caption is None:
            caption = self.caption(image) if queries else ""
        proposals = self.proposer(image) if queries else []
        heatmaps: dict[str, np.ndarray] = {}
        matches: dict[str, MaskMatch] = {}
        for query in queries:
            heatmaps[query] = np.asarray(self.attention(image, caption, query), dtype=np.float32)
            region = threshold_heatmap(heatmaps[query], self.config.threshold)
            matches[query] = match_sam_mask(
                region, proposals, min_iou=self.config.min_match_iou, query=query
            )
        edit_mask = combine_edit_mask(
            [matches[q].mask for q in edit_queries], [matches[q].mask for q in keep_queries], shape
        )
        sigma = edge_sigma_for(shape[0], shape[1], self.config.edge_sigma_px)
        warnings = tuple(m.warning for m in matches.values() if m.warning)
        if self.profile == "tiny":
            warnings += ("tiny random networks: this mask is a pipeline check, not a segmentation",)
        return MaskPreview(
            caption=caption,
            heatmaps=heatmaps,
            matches=matches,
            edit_mask=edit_mask,
            soft_mask=soften_mask(edit_mask, sigma),
            edit_queries=tuple(edit_queries),
            keep_queries=tuple(keep_queries),
            profile=self.profile,
            num_proposals=len(proposals),
            warnings=warnings,
        )

    def mask_provider(self) -> AdssMaskProvider:
        """The hook a turn calls once per view with its pre-render (paper Sec. 3.2)."""
        return AdssMaskProvider(self)


class AdssMaskProvider:
    """`MaskProvider` backed by ADSS; keeps each view's summary and the latest preview.

    Only the small summaries are kept per view: full previews (heatmaps per query) of a
    hundred 512 px views would hold hundreds of megabytes.
    """

    def __init__(self, segmenter: AdssSegmenter) -> None:
        self.segmenter = segmenter
        self.summaries: dict[str, dict[str, Any]] = {}
        """Per view name: `MaskPreview.summary()` of the preview its mask came from."""
        self.last_preview: MaskPreview | None = None
        """The most recent preview, images included."""

    def __call__(self, view_name: str, prerender_image: np.ndarray, spec: Any) -> np.ndarray:
        edit_queries = tuple(getattr(spec, "edit_queries", ()) or ())
        keep_queries = tuple(getattr(spec, "keep_queries", ()) or ())
        if not edit_queries and not keep_queries:
            height, width = np.asarray(prerender_image).shape[:2]
            return np.ones((height, width), dtype=np.float32)
        preview = self.segmenter.preview(
            prerender_image, edit_queries, keep_queries, caption=getattr(spec, "caption", None)
        )
        for warning in preview.warnings:
            log.warning("view %s: %s", view_name, warning)
        self.summaries[view_name] = preview.summary()
        self.last_preview = preview
        return preview.soft_mask
