"""Masks a user made elsewhere: one PNG per view in a folder (`edit3d edit --masks DIR`).

`<DIR>/<image stem>.png` holds view `images/<image stem>.<ext>`'s region to edit: white
(>= 128) edits, black keeps. The masks are resized to the pre-render and their edges
smoothed as ADSS masks are (paper Sec. 3.2), so fusion treats them alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edit3d.segmentation.image_io import read_mask
from edit3d.segmentation.soft_mask import edge_sigma_for, soften_mask

MASK_SUFFIX = ".png"


class FolderMaskProvider:
    """`MaskProvider` reading one mask per view from a folder (the queries are ignored)."""

    def __init__(self, folder: Path, *, edge_sigma_px: float = 4.0) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"masks folder {self.folder} is not a directory")
        if edge_sigma_px < 0:
            raise ValueError(f"edge_sigma_px must be >= 0, got {edge_sigma_px}")
        self.edge_sigma_px = edge_sigma_px

    def path_for(self, view_name: str) -> Path:
        """Where view `view_name`'s mask is expected."""
        return self.folder / f"{Path(view_name).stem}{MASK_SUFFIX}"

    def missing(self, view_names: Iterable[str]) -> list[str]:
        """The views without a mask file (checked before a turn starts its pre-renders)."""
        return [name for name in view_names if not self.path_for(name).is_file()]

    def __call__(self, view_name: str, prerender_image: np.ndarray, spec: Any) -> np.ndarray:
        height, width = np.asarray(prerender_image).shape[:2]
        path = self.path_for(view_name)
        if not path.is_file():
            raise FileNotFoundError(f"no mask for view {view_name!r}: {path}")
        mask = read_mask(path, size=(height, width))
        return soften_mask(mask, edge_sigma_for(height, width, self.edge_sigma_px))
