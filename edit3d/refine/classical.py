"""A classical upscaler: the labelled stand-in for Real-ESRGAN where its weights are missing.

`LanczosUpscaler` resamples with a Lanczos kernel and sharpens with an unsharp mask. It adds
no detail a network would invent; it lets the super-resolution fine-tune (paper Sec. 3.3)
run its real code path (render, upscale, fine-tune at the targets' resolution) on a machine
without the SR weights. Every output made with it must say so (`CLASSICAL_UPSCALER_LABEL`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSICAL_UPSCALER_LABEL = "classical Lanczos + unsharp-mask upscaler (not Real-ESRGAN)"
"""How every output of the classical upscaler is to be labelled."""


@dataclass(frozen=True)
class LanczosUpscaler:
    """A x`scale` upscaler with the `SuperResolver` interface (`upscale`, `scale`, `name`)."""

    scale: int = 4
    """Upscale factor (Real-ESRGAN x4plus's is 4)."""
    sharpen: float = 0.8
    """Unsharp-mask amount: output = up + sharpen * (up - blur(up)); 0 = plain Lanczos."""
    name: str = CLASSICAL_UPSCALER_LABEL
    """What made the targets, as a refine result reports it."""

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.sharpen < 0:
            raise ValueError(f"sharpen must be >= 0, got {self.sharpen}")

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """float32 [H, W, 3] in [0, 1] -> [H*scale, W*scale, 3] in [0, 1]."""
        import cv2

        image = np.ascontiguousarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
        height, width = image.shape[:2]
        size = (width * self.scale, height * self.scale)
        upscaled = cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)
        if self.sharpen > 0 and self.scale > 1:
            # blur over about one source pixel: sharpens the edges the resampling softened
            blurred = cv2.GaussianBlur(upscaled, (0, 0), sigmaX=0.5 * self.scale)
            upscaled = upscaled + self.sharpen * (upscaled - blurred)
        return np.clip(upscaled, 0.0, 1.0).astype(np.float32)
