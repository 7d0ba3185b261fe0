"""CLIP scores over a chain of turns, as in the paper's Tab. 1 (Sec. 4.3).

For nodes n0 (the base) → n1 → … → nk with captions c0 … ck, the same N views are
rendered from every node; the table reports, per consecutive pair (n_{i-1}, n_i), the
CLIP directional similarity (mean over views) and their mean, plus each node's CLIP
text-image similarity with its caption. The CLIP model is named with every figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edit3d.metrics.clip_score import ClipLike, directional_similarities
from edit3d.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from edit3d.scene.cameras import CameraView


def evaluation_views(views: Sequence[CameraView], count: int) -> list[CameraView]:
    """`count` cameras along the dataset's camera sequence.

    Fewer than the dataset has: evenly spaced dataset views. More: poses interpolated
    between consecutive dataset views (positions linearly, rotations by slerp), so every
    figure is over `count` distinct viewpoints as the paper's 100.
    """
    from scipy.spatial.transform import Rotation, Slerp

    views = list(views)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not views:
        raise ValueError("views must not be empty")
    positions = np.linspace(0.0, len(views) - 1, count)
    result = []
    for index, s in enumerate(positions):
        low = int(np.floor(s))
        high = min(low + 1, len(views) - 1)
        t = s - low
        if t < 1e-9 or low == high:
            result.append(views[low])
            continue
        a, b = views[low], views[high]
        rotations = Rotation.from_matrix(np.stack([a.c2w[:3, :3], b.c2w[:3, :3]]))
        c2w = np.eye(4)
        c2w[:3, :3] = Slerp([0.0, 1.0], rotations)([t]).as_matrix()[0]
        c2w[:3, 3] = (1 - t) * a.c2w[:3, 3] + t * b.c2w[:3, 3]
        result.append(CameraView(f"eval_{index:04d}", c2w, a.intrinsics))
    return result


@dataclass
class ClipEvaluation:
    """CLIP figures over a chain of history nodes."""

    model: str
    """CLIP weights that produced every figure (ends in "(tiny)" for a pipeline check)."""
    nodes: list[str]
    """Node ids, base first."""
    captions: list[str]
    """Caption of each node."""
    views: int
    """Rendered views per node."""
    directional: list[float]
    """Directional similarity of each consecutive pair (len(nodes) - 1 values)."""
    text_image: list[float]
    """Text-image similarity of each node with its caption."""

    @property
    def mean_directional(self) -> float:
        return float(np.mean(self.directional)) if self.directional else float("nan")

    @property
    def is_pipeline_check(self) -> bool:
        return self.model.endswith("(tiny)")


def evaluate_chain(
    fields: Sequence[Any],
    node_ids: Sequence[str],
    captions: Sequence[str],
    clip: ClipLike,
    views: Sequence[CameraView],
    *,
    render_long_side: int | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> ClipEvaluation:
    """Renders `views` from each field (anything with `render(view, width=, height=)`)."""
    if not (len(fields) == len(node_ids) == len(captions)) or len(fields) < 2:
        raise ValueError(
            "captions must give one caption per node and there must be at least two nodes, got "
            f"{len(captions)} captions for {len(node_ids)} nodes"
        )
    features = []
    for index, field in enumerate(fields):
        images = []
        for view in views:
            if cancel is not None:
                cancel.raise_if_cancelled()
            width, height = _size(view, render_long_side)
            images.append(np.asarray(field.render(view, width=width, height=height).rgb))
        features.append(_unit(clip.image_features(images)))
        progress(
            ProgressEvent("eval", index + 1, len(fields), message=f"rendered {node_ids[index]}")
        )
    texts = _unit(clip.text_features(list(captions)))
    directional = [
        float(
            np.mean(directional_similarities(features[i - 1], features[i], texts[i - 1], texts[i]))
        )
        for i in range(1, len(fields))
    ]
    text_image = [float(np.mean(features[i] @ texts[i])) for i in range(len(fields))]
    return ClipEvaluation(
        model=clip.name,
        nodes=list(node_ids),
        captions=list(captions),
        views=len(views),
        directional=directional,
        text_image=text_image,
    )


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _size(view: CameraView, long_side: int | None) -> tuple[int, int]:
    width, height = view.intrinsics.width, view.intrinsics.height
    if long_side is None or max(width, height) <= long_side:
        return width, height
    factor = long_side / max(width, height)
    return max(round(width * factor), 1), max(round(height * factor), 1)


def format_clip_table(result: ClipEvaluation) -> str:
    """A Tab. 1-style table: one column per consecutive pair, then the mean."""
    pairs = [f"({result.nodes[i - 1]}, {result.nodes[i]})" for i in range(1, len(result.nodes))]
    width = max([14, *(len(p) for p in pairs)])
    lines = [f"CLIP model: {result.model}; {result.views} rendered views per node"]
    if result.is_pipeline_check:
        lines.append("pipeline check: tiny random CLIP weights, the figures measure nothing")
    lines.append(f"{'':<26}" + "".join(f"{p:>{width + 2}}" for p in pairs) + f"{'mean':>10}")
    scores = "".join(f"{s:>{width + 2}.4f}" for s in result.directional)
    lines.append(f"{'CLIP directional score':<26}{scores}{result.mean_directional:>10.4f}")
    lines.append("")
    lines.append(f"CLIP text-image similarity ({result.model})")
    for node, caption, score in zip(result.nodes, result.captions, result.text_image, strict=True):
        lines.append(f"  {node:<14} {score:.4f}  {caption!r}")
    return "\n".join(lines)
