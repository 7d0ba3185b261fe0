"""A mask provider backed by ground-truth masks, for tests and evaluation only.

It performs no segmentation: it reads `<masks_dir>/<object id>/<image stem>.png` (the
layout `edit3d sample-scene` writes) for the objects a turn's queries name. Tests use it to
measure fusion and locality independently of ADSS's segmentation quality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edit3d.segmentation.image_io import read_mask
from edit3d.segmentation.matching import combine_edit_mask
from edit3d.segmentation.soft_mask import edge_sigma_for, soften_mask


class GroundTruthMaskProvider:
    """`MaskProvider` that looks masks up instead of computing them (tests/eval only)."""

    def __init__(
        self,
        masks_dir: Path,
        *,
        edge_sigma_px: float = 4.0,
        objects_for_query: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """`objects_for_query` maps a query to object ids; by default a query is an object id."""
        self.masks_dir = Path(masks_dir)
        if not self.masks_dir.is_dir():
            raise ValueError(f"masks_dir {self.masks_dir} is not a directory")
        if edge_sigma_px < 0:
            raise ValueError(f"edge_sigma_px must be >= 0, got {edge_sigma_px}")
        self.edge_sigma_px = edge_sigma_px
        self.objects_for_query = {q: tuple(ids) for q, ids in (objects_for_query or {}).items()}

    def object_mask(self, object_id: str, view_name: str, shape: tuple[int, int]) -> np.ndarray:
        """bool [H, W]: the ground-truth mask of `object_id` in view `view_name`."""
        path = self.masks_dir / object_id / f"{Path(view_name).stem}.png"
        if not path.is_file():
            raise FileNotFoundError(
                f"no ground-truth mask for {object_id!r} in view {view_name!r}: {path}"
            )
        return read_mask(path, size=shape)

    def query_mask(self, query: str, view_name: str, shape: tuple[int, int]) -> np.ndarray:
        """bool [H, W]: union of the masks of the objects `query` names."""
        result = np.zeros(shape, dtype=bool)
        for object_id in self.objects_for_query.get(query, (query,)):
            result |= self.object_mask(object_id, view_name, shape)
        return result

    def __call__(self, view_name: str, prerender_image: np.ndarray, spec: Any) -> np.ndarray:
        shape = tuple(np.asarray(prerender_image).shape[:2])
        edit_queries = tuple(getattr(spec, "edit_queries", ()) or ())
        keep_queries = tuple(getattr(spec, "keep_queries", ()) or ())
        if not edit_queries and not keep_queries:
            return np.ones(shape, dtype=np.float32)
        edit_mask = combine_edit_mask(
            [self.query_mask(q, view_name, shape) for q in edit_queries],
            [self.query_mask(q, view_name, shape) for q in keep_queries],
            shape,
        )
        return soften_mask(edit_mask, edge_sigma_for(shape[0], shape[1], self.edge_sigma_px))
