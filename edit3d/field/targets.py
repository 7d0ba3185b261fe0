"""Per-view training targets held in memory (IN2N style), replaceable by view name."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


class TargetStore:
    """One target image per view, any resolution per view, all in one flat pixel buffer.

    Rays are drawn uniformly over views, then uniformly over that view's pixels. Replacing a
    target with one of the same size is an in-place copy; another size re-lays the buffer.
    """

    def __init__(
        self, images: Mapping[str, np.ndarray], device: str | torch.device = "cpu"
    ) -> None:
        if not images:
            raise ValueError("images must hold at least one view, got none")
        self.device = torch.device(device)
        self.names: list[str] = list(images)
        self._index = {name: i for i, name in enumerate(self.names)}
        self.replaced: set[str] = set()
        """Views whose target was replaced since construction (what a resume must restore)."""
        self.layout_version = 0
        """Changes whenever a view's target size changes (rays must be regenerated)."""
        self._images = {name: _as_tensor(name, img) for name, img in images.items()}
        self._relayout()

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> np.ndarray:
        return self._images[name].numpy().copy()

    def image(self, name: str) -> torch.Tensor:
        """The view's current target, float32 [H, W, 3] on the store's device (whole-image
        training; do not modify it)."""
        if name not in self._index:
            raise ValueError(f"name must be a view of this target store, got {name!r}")
        return self._images[name].to(self.device)

    def size_of(self, name: str) -> tuple[int, int]:
        """(height, width) of the view's current target."""
        height, width = self._images[name].shape[:2]
        return int(height), int(width)

    def replace(self, name: str, image: np.ndarray) -> None:
        """Make `image` (float [H, W, 3] in [0, 1], any size) the target of view `name`."""
        if name not in self._index:
            raise ValueError(f"name must be a view of this target store, got {name!r}")
        tensor = _as_tensor(name, image)
        same_size = tensor.shape == self._images[name].shape
        self._images[name] = tensor
        self.replaced.add(name)
        if same_size:
            i = self._index[name]
            start = int(self._offsets[i])
            self._flat[start : start + tensor.shape[0] * tensor.shape[1]] = tensor.reshape(
                -1, 3
            ).to(self.device)
        else:
            self._relayout()

    def sample(
        self, num_rays: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(view index in `names` [N], pixel-centre coords (y, x) [N, 2], target rgb [N, 3])."""
        view = torch.randint(len(self.names), (num_rays,), generator=generator)
        u = torch.rand((num_rays, 2), generator=generator)
        heights, widths = self._heights[view], self._widths[view]
        y = torch.minimum((u[:, 0] * heights).long(), heights - 1)
        x = torch.minimum((u[:, 1] * widths).long(), widths - 1)
        flat_index = self._offsets[view] + y * widths + x
        coords = torch.stack([y, x], dim=-1).float() + 0.5
        return view.to(self.device), coords.to(self.device), self._flat[flat_index.to(self.device)]

    def sample_patches(
        self, num_patches: int, patch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`num_patches` whole square patches, as `sample` returns pixels: [N·P·P] view
        indices, (y, x) pixel centres and target rgb, patch by patch, row-major inside one.

        A view is drawn uniformly, then the patch's top-left corner uniformly among the
        positions where the whole patch fits (nerfstudio's PatchPixelSampler draws the same
        way, from the global RNG over one image size; targets here differ in size per view
        and draw from `generator`, which checkpoints save, so a resumed run repeats them).
        """
        too_small = [
            name
            for name, height, width in zip(self.names, self._heights, self._widths, strict=True)
            if min(int(height), int(width)) < patch_size
        ]
        if too_small:
            raise ValueError(
                f"patch_size {patch_size} does not fit in the targets of {too_small[:3]} "
                f"(sizes {[self.size_of(n) for n in too_small[:3]]})"
            )
        view = torch.randint(len(self.names), (num_patches,), generator=generator)
        u = torch.rand((num_patches, 2), generator=generator)
        heights, widths = self._heights[view], self._widths[view]
        top = torch.minimum((u[:, 0] * (heights - patch_size + 1)).long(), heights - patch_size)
        left = torch.minimum((u[:, 1] * (widths - patch_size + 1)).long(), widths - patch_size)
        offsets = torch.arange(patch_size)
        y = (top[:, None, None] + offsets[None, :, None]).expand(-1, patch_size, patch_size)
        x = (left[:, None, None] + offsets[None, None, :]).expand(-1, patch_size, patch_size)
        view = view[:, None, None].expand(-1, patch_size, patch_size).reshape(-1)
        y, x = y.reshape(-1), x.reshape(-1)
        flat_index = self._offsets[view] + y * self._widths[view] + x
        coords = torch.stack([y, x], dim=-1).float() + 0.5
        return view.to(self.device), coords.to(self.device), self._flat[flat_index.to(self.device)]

    def state_dict(self) -> dict[str, object]:
        """The replaced views' current targets (the rest is rebuilt from its source)."""
        return {
            "names": list(self.names),
            "replaced": {name: self._images[name].clone() for name in sorted(self.replaced)},
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        names = list(state["names"])  # type: ignore[call-overload]
        if names != self.names:
            raise ValueError("state must describe the same views in the same order")
        for name, tensor in state["replaced"].items():  # type: ignore[attr-defined]
            self.replace(name, tensor.numpy())

    def _relayout(self) -> None:
        sizes = [self._images[name].shape[:2] for name in self.names]
        self._heights = torch.tensor([h for h, _ in sizes], dtype=torch.long)
        self._widths = torch.tensor([w for _, w in sizes], dtype=torch.long)
        counts = self._heights * self._widths
        self._offsets = torch.cumsum(counts, 0) - counts
        self._flat = torch.cat([self._images[n].reshape(-1, 3) for n in self.names]).to(self.device)
        self.layout_version += 1


def _as_tensor(name: str, image: np.ndarray) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"target of {name!r} must be [H, W, 3], got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"target of {name!r} must be finite")
    return torch.from_numpy(np.clip(array, 0.0, 1.0).copy())
