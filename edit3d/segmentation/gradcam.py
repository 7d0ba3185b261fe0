"""Grad-CAM on BLIP image-text matching, as LAVIS's `compute_gradcam` (paper Sec. 3.2).

For the text "caption query", one forward pass of BLIP's ITM branch captures the
cross-attention probabilities of one text-encoder layer; their gradient with respect to
the "match" logit, clamped at zero, weights them. The per-token maps over the image patch
grid are averaged over heads, and the query's own tokens (located exactly, by building the
token sequence from its parts) are averaged into the query's map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edit3d.segmentation.attention_maps import heatmap_from_patches

ENC_TOKEN = "[ENC]"
"""LAVIS replaces [CLS] with this token for image-text matching."""

LAVIS_LAYER = 6
"""LAVIS's default block for 12-layer BLIP; shallower models use their second-to-last layer."""


@dataclass(frozen=True)
class GradCamConfig:
    """Settings of the ITM Grad-CAM."""

    layer: int | None = None
    """Text-encoder layer whose cross-attention is read; None = min(6, last - 1)."""
    max_text_tokens: int = 35
    """Longest "[ENC] caption query [SEP]" accepted (LAVIS truncates at 35; here it is an error)."""
    blur_sigma_fraction: float = 0.02
    """Gaussian blur of the upsampled map, as a fraction of the image's long side (LAVIS)."""


@dataclass(frozen=True)
class ItmText:
    """Token ids for one ITM pass and where the query sits in them."""

    input_ids: tuple[int, ...]
    """[ENC] + caption tokens + query tokens + [SEP]."""
    query_span: tuple[int, int]
    """Token positions [start, stop) of the query inside input_ids."""


@dataclass(frozen=True)
class TokenMaps:
    """Grad-CAM of every token of one ITM text."""

    maps: np.ndarray
    """float32 [T, h, w]: relevance of each image patch per text token (mean over heads)."""
    text: ItmText
    """The tokens the maps belong to."""
    match_logit: float
    """The ITM "match" logit the gradient was taken of."""

    @property
    def query_map(self) -> np.ndarray:
        """float32 [h, w]: the mean map of the query's tokens."""
        start, stop = self.text.query_span
        return self.maps[start:stop].mean(axis=0)


def enc_token_id(tokenizer: Any) -> int:
    """The id of [ENC]; a ValueError when the tokenizer does not know that token."""
    token_id = tokenizer.convert_tokens_to_ids(ENC_TOKEN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(
            f"tokenizer has no {ENC_TOKEN} token: BLIP's ITM expects it in place of [CLS]; "
            "add it as a special token (ids must match the checkpoint's embedding table)"
        )
    return int(token_id)


def build_itm_text(tokenizer: Any, caption: str, query: str, *, max_tokens: int = 35) -> ItmText:
    """Tokens of "caption query" with the query's span known by construction.

    Caption and query are tokenized separately and concatenated (WordPiece splits on
    whitespace, so this equals tokenizing the joined text); a text longer than
    `max_tokens` is refused because truncation would cut the query off its end.
    """
    if not query.strip():
        raise ValueError(f"query must contain words, got {query!r}")
    caption_ids = tokenizer(caption.strip(), add_special_tokens=False)["input_ids"]
    query_ids = tokenizer(query.strip(), add_special_tokens=False)["input_ids"]
    ids = [enc_token_id(tokenizer), *caption_ids, *query_ids, tokenizer.sep_token_id]
    if len(ids) > max_tokens:
        raise ValueError(
            f"caption + query {query!r} is {len(ids)} tokens, more than max_text_tokens="
            f"{max_tokens}; truncating would cut the query off: shorten the caption or raise "
            "max_text_tokens"
        )
    start = 1 + len(caption_ids)
    return ItmText(tuple(int(i) for i in ids), (start, start + len(query_ids)))


def image_to_pixel_values(processor: Any, image: np.ndarray) -> torch.Tensor:
    """BLIP eval preprocessing (resize bicubic, CLIP mean/std) of float [H, W, 3] in [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    as_bytes = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return processor.image_processor(images=as_bytes, return_tensors="pt")["pixel_values"]


class BlipGradCam:
    """Grad-CAM maps of text tokens over the image, from a `BlipForImageTextRetrieval`."""

    def __init__(self, model: Any, processor: Any, config: GradCamConfig | None = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.config = config or GradCamConfig()
        self.layer = self._checked_layer(self.config.layer)
        enc_token_id(processor.tokenizer)  # fail at construction, not at the first query

    def _checked_layer(self, layer: int | None) -> int:
        num_layers = int(self.model.config.text_config.num_hidden_layers)
        if num_layers < 2:
            raise ValueError(f"Grad-CAM needs a text encoder of >= 2 layers, got {num_layers}")
        if layer is None:
            return min(LAVIS_LAYER, num_layers - 2)
        if layer == num_layers - 1 or layer == -1:
            raise ValueError(
                f"layer={layer} is the last text layer: after it only token 0 ([ENC]) reaches "
                "the ITM head, so every other token's map has zero gradient; "
                f"use 0..{num_layers - 2}"
            )
        if not 0 <= layer < num_layers - 1:
            raise ValueError(f"layer must be in 0..{num_layers - 2}, got {layer}")
        return layer

    @property
    def patch_grid(self) -> tuple[int, int]:
        vision = self.model.config.vision_config
        side = int(vision.image_size) // int(vision.patch_size)
        return side, side

    def token_maps(self, image: np.ndarray, caption: str, query: str) -> TokenMaps:
        """Per-token Grad-CAM maps [T, h, w] for the text "caption query" on `image`."""
        text = build_itm_text(
            self.processor.tokenizer, caption, query, max_tokens=self.config.max_text_tokens
        )
        device = next(self.model.parameters()).device
        pixel_values = image_to_pixel_values(self.processor, image).to(device)
        input_ids = torch.tensor([text.input_ids], dtype=torch.long, device=device)
        probs, logit = self._attention_and_match_logit(pixel_values, input_ids)
        grads = torch.autograd.grad(logit, probs)[0]
        cams = probs.detach() * grads.clamp(min=0)  # [1, heads, T, 1 + h*w]
        h, w = self.patch_grid
        maps = cams[0, :, :, 1:].reshape(cams.shape[1], cams.shape[2], h, w).mean(dim=0)
        return TokenMaps(maps.float().cpu().numpy(), text, float(logit.detach()))

    def _attention_and_match_logit(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []

        def keep_probs(_module: Any, _inputs: Any, outputs: tuple[torch.Tensor, ...]) -> None:
            captured.append(outputs[1])  # softmax probabilities, before dropout

        layer = self.model.text_encoder.encoder.layer[self.layer]
        handle = layer.crossattention.self.register_forward_hook(keep_probs)
        try:
            with torch.enable_grad():
                output = self.model(
                    input_ids=input_ids,
                    pixel_values=pixel_values,
                    attention_mask=torch.ones_like(input_ids),
                    use_itm_head=True,
                )
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"expected one cross-attention pass in layer {self.layer}")
        return captured[0], output.itm_score[0, 1]

    def patch_map(self, image: np.ndarray, caption: str, query: str) -> np.ndarray:
        """float32 [h, w]: the query's Grad-CAM over the patch grid (before post-processing)."""
        return self.token_maps(image, caption, query).query_map

    def heatmap(self, image: np.ndarray, caption: str, query: str) -> np.ndarray:
        """float32 [H, W] in [0, 1]: the query's map post-processed to the image size."""
        height, width = np.asarray(image).shape[:2]
        return heatmap_from_patches(
            self.patch_map(image, caption, query),
            height,
            width,
            blur_sigma_fraction=self.config.blur_sigma_fraction,
        )
