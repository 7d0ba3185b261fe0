"""Image captions with BLIP-large, decoded as LAVIS does (paper Sec. 3.2, 4.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edit3d.segmentation.gradcam import image_to_pixel_values


@dataclass(frozen=True)
class CaptionConfig:
    """LAVIS's caption decoding settings."""

    prompt: str = "a picture of "
    """Text the decoder continues; stripped from the returned caption."""
    num_beams: int = 3
    """Beam search width."""
    max_length: int = 30
    """Most tokens generated, prompt included."""
    min_length: int = 10
    """Fewest tokens generated, prompt included."""

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if not 0 < self.min_length <= self.max_length:
            raise ValueError(
                f"need 0 < min_length <= max_length, got {self.min_length}, {self.max_length}"
            )


class BlipCaptioner:
    """Describes an image in words with a `BlipForConditionalGeneration`."""

    def __init__(self, model: Any, processor: Any, config: CaptionConfig | None = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.config = config or CaptionConfig()

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> str:
        device = next(self.model.parameters()).device
        pixel_values = image_to_pixel_values(self.processor, image).to(device)
        prompt = self.processor.tokenizer(self.config.prompt, return_tensors="pt")
        generated = self.model.generate(
            pixel_values=pixel_values,
            input_ids=prompt["input_ids"].to(device),
            num_beams=self.config.num_beams,
            max_length=self.config.max_length,
            min_length=self.config.min_length,
        )
        text = self.processor.tokenizer.decode(generated[0], skip_special_tokens=True)
        return strip_prompt(text, self.config.prompt)


def strip_prompt(text: str, prompt: str) -> str:
    """The caption without the decoding prompt the decoder was started from."""
    text = text.strip()
    head = prompt.strip()
    if head and text.lower().startswith(head.lower()):
        text = text[len(head) :]
    return text.strip()
