"""nerfstudio's NerfactoModel, constructible with no network access.

nerfacto's `populate_modules` builds torchmetrics' LPIPS, whose constructor fetches AlexNet
weights through torch.hub. LPIPS only feeds nerfstudio's eval image metrics, so here it is
built on first use instead: training, rendering and checkpoints never touch the network.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig

_PATCH_LOCK = threading.Lock()


class DeferredLpips:
    """Stands in for torchmetrics' LPIPS; builds the real metric (a download) when called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._metric: torch.nn.Module | None = None

    @property
    def built(self) -> bool:
        return self._metric is not None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._metric is None:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self._metric = LearnedPerceptualImagePatchSimilarity(*self._args, **self._kwargs)
        return self._metric.to(inputs[0].device)(*inputs)


@contextmanager
def _lpips_deferred() -> Iterator[None]:
    import torchmetrics.image.lpip as lpip_module

    with _PATCH_LOCK:
        original = lpip_module.LearnedPerceptualImagePatchSimilarity
        lpip_module.LearnedPerceptualImagePatchSimilarity = DeferredLpips  # type: ignore[misc]
        try:
            yield
        finally:
            lpip_module.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[misc]


class OfflineNerfactoModel(NerfactoModel):
    """NerfactoModel whose LPIPS metric is built lazily (see module docstring)."""

    def populate_modules(self) -> None:
        with _lpips_deferred():
            super().populate_modules()


def build_nerfacto(
    config: NerfactoModelConfig, scene_aabb: torch.Tensor, num_views: int, device: str
) -> OfflineNerfactoModel:
    """A fresh nerfacto model over `scene_aabb` ([2, 3], field units) for `num_views` images."""
    model = OfflineNerfactoModel(
        config=config, scene_box=SceneBox(aabb=scene_aabb.float()), num_train_data=num_views
    )
    return model.to(device)
