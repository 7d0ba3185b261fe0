"""The editor's settings of a turn (paper Sec. 3.1): the one owner of their defaults.

A turn spec, the CLI, the sidecar and the add-on all speak these fields; each layer passes
on only what the user set and leaves the rest to the defaults here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SIZE_MULTIPLE = 8
"""Diffusion image sides are rounded to a multiple of this (the SD VAE downsamples 8×)."""


@dataclass(frozen=True)
class EditorSettings:
    """How the diffusion editor edits one view (defaults: the paper's, i.e. IN2N's)."""

    guidance_scale: float = 7.5
    """Text guidance weight s_text (≥ 0)."""
    image_guidance_scale: float = 1.5
    """Image guidance weight s_image (≥ 0)."""
    diffusion_steps: int = 20
    """DDIM denoising steps from T down to 0 (one batched UNet call each)."""
    lower_bound: float = 0.02
    """Smallest noise level T, as a fraction of the scheduler's training timesteps."""
    upper_bound: float = 0.98
    """Largest noise level T, as a fraction of the scheduler's training timesteps."""
    resolution: int | None = None
    """Long side in pixels the diffusion runs at (None: the editor's own, 512 for "ip2p")."""

    def __post_init__(self) -> None:
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.image_guidance_scale < 0:
            raise ValueError(f"image_guidance_scale must be >= 0, got {self.image_guidance_scale}")
        if self.diffusion_steps < 1:
            raise ValueError(f"diffusion_steps must be >= 1, got {self.diffusion_steps}")
        if not 0.0 <= self.lower_bound <= self.upper_bound <= 1.0:
            raise ValueError(
                "lower_bound and upper_bound must satisfy 0 <= lower_bound <= upper_bound <= 1, "
                f"got lower_bound={self.lower_bound}, upper_bound={self.upper_bound}"
            )
        if self.resolution is not None and self.resolution < SIZE_MULTIPLE:
            raise ValueError(
                f"resolution must be >= {SIZE_MULTIPLE} or None, got {self.resolution}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(EditorSettings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EditorSettings:
        """Settings from a mapping of only the fields that were set; unknown names are refused."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(editor_setting_names()))
        if unknown:
            raise ValueError(
                f"unknown editor settings {unknown}; known: {list(editor_setting_names())}"
            )
        return cls(**data)

    def summary(self) -> str:
        """One line for histories: 'text 7.5 · image 1.5 · 20 steps · noise 0.02–0.98'."""
        size = f" · {self.resolution} px" if self.resolution is not None else ""
        return (
            f"text {self.guidance_scale:g} · image {self.image_guidance_scale:g} · "
            f"{self.diffusion_steps} steps · noise {self.lower_bound:g}–{self.upper_bound:g}{size}"
        )


def editor_setting_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(EditorSettings))


def editor_setting_default(name: str) -> Any:
    """The default of one setting (for help texts that must not restate it)."""
    return getattr(EditorSettings(), name)
