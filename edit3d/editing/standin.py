"""A deterministic STAND-IN editor that shows the method without any model weights.

`RecolourEditor` is not InstructPix2Pix and not the paper's editor: it reads a colour word
from the instruction ("make the shirt red") and recolours the whole view to that colour,
keeping each pixel's brightness. Where the recolour lands is decided, as in Edit3D, by the
turn's soft masks (paper Sec. 3.2): the editor brings a stand-in for ADSS that looks the
named parts up in the ground-truth masks of a sample scene (`edit3d sample-scene` writes
`masks/<object id>/<view>.png` and `objects.json`). Fusion, the multi-turn conditioning and
the field training are the real ones, so the result shows turn-to-turn retention and
locality with no network involved.

A sidecar runs it only when its operator allows it on the command line::

    edit3d-sidecar --allow-editor edit3d.editing.standin:RecolourEditor ...

Its outputs must be labelled as made by this stand-in (``STAND_IN_LABEL``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edit3d.progress import CancelToken
from edit3d.segmentation.ground_truth import GroundTruthMaskProvider

STAND_IN_LABEL = "STAND-IN recolour editor + ground-truth masks (not InstructPix2Pix, not ADSS)"
"""How every output of this editor is to be labelled."""

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.08, 0.08),
    "green": (0.10, 0.70, 0.15),
    "blue": (0.10, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (0.95, 0.50, 0.05),
    "purple": (0.55, 0.15, 0.75),
    "pink": (0.95, 0.45, 0.70),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
}
"""Colour words the editor understands, as linear-ish sRGB in [0, 1]."""

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def colour_named_in(instruction: str) -> tuple[float, float, float]:
    """The first colour word of `instruction`; ValueError naming the instruction if none."""
    for word in re.findall(r"[a-z]+", instruction.lower()):
        if word in COLOURS:
            return COLOURS[word]
    raise ValueError(
        f"instruction {instruction!r} names no colour the stand-in recolour editor knows "
        f"({', '.join(COLOURS)})"
    )


def recolour(image: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    """float32 [H, W, 3]: every pixel in `colour`, shaded by the pixel's own brightness."""
    image = np.asarray(image, dtype=np.float32)
    luma = image @ _LUMA  # [H, W]
    target = np.asarray(colour, dtype=np.float32)
    # brightness relative to the view's mean keeps shading without washing the colour out
    shade = luma / max(float(luma.mean()), 1e-3)
    return np.clip(target[None, None, :] * (0.5 + 0.5 * shade[..., None]), 0.0, 1.0)


class RecolourEditor:
    """`Editor` that recolours a view to the colour its instruction names (see module doc)."""

    is_pipeline_check = False
    is_stand_in = True
    reads_render = False
    """Its edit is the condition image recoloured: a turn need not render views for it."""
    label = STAND_IN_LABEL

    def __init__(self, *, device: str = "cpu", edge_sigma_px: float = 1.0) -> None:
        """`device` is accepted for the editor-factory convention and unused (numpy only)."""
        self.device = device
        self.edge_sigma_px = edge_sigma_px

    def edit(
        self,
        render: np.ndarray,
        condition: np.ndarray,
        instruction: str,
        *,
        view_name: str,
        seed: int | None = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """The condition image (previous turn's render) recoloured; deterministic."""
        return recolour(condition, colour_named_in(instruction))

    def mask_provider_for(self, dataset_root: Path) -> GroundTruthMaskProvider:
        """The stand-in for ADSS: a query names a sample-scene part ("shirt") and its
        ground-truth masks are the turn's masks. ValueError if the dataset has none."""
        return ground_truth_masks(dataset_root, edge_sigma_px=self.edge_sigma_px)


def ground_truth_masks(dataset_root: Path, edge_sigma_px: float = 1.0) -> GroundTruthMaskProvider:
    """Mask provider of a sample scene's named parts (`edit3d edit --mask-provider
    edit3d.editing.standin:ground_truth_masks`). ValueError if the dataset has no part masks."""
    from edit3d.scene.sample import SampleScene

    try:
        scene = SampleScene.load(dataset_root)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"dataset {dataset_root} has no ground-truth part masks for the stand-in "
            f"editor (make one with `edit3d sample-scene`): {error}"
        ) from error
    return GroundTruthMaskProvider(
        Path(dataset_root) / "masks",
        edge_sigma_px=edge_sigma_px,
        objects_for_query=_objects_by_name(scene.objects),
    )


def _objects_by_name(objects: Any) -> dict[str, tuple[str, ...]]:
    named: dict[str, list[str]] = {}
    for obj in objects:
        named.setdefault(obj.name, []).append(obj.id)
    return {name: tuple(ids) for name, ids in named.items()}
