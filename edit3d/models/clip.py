"""CLIP image/text encoders for the evaluation metrics (paper Sec. 4.3).

Registered names:

* ``clip-vit-l14`` -> openai/clip-vit-large-patch14 (InstructPix2Pix's metric model)
* ``clip-vit-b32`` -> openai/clip-vit-base-patch32 (instruct-nerf2nerf's metric script)

Both load as `ClipEncoder`. The tiny profile builds a `CLIPModel` from a small config with
a byte-level tokenizer written in memory (no files, no download): a pipeline check, its
figures say nothing about an edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edit3d.models import sources
from edit3d.models.registry import ModelSpec, register

CLIP_VIT_L14 = "clip-vit-l14"
CLIP_VIT_B32 = "clip-vit-b32"

# OpenAI CLIP's preprocessing statistics (RGB).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipEncoder:
    """Embeds images and texts into CLIP's joint space (features L2-normalised)."""

    model: torch.nn.Module
    """A transformers `CLIPModel`."""
    tokenizer: object
    """The matching `CLIPTokenizer`."""
    name: str
    """Which weights: a registered name, with "(tiny)" for random pipeline-check ones."""
    device: str = "cpu"
    """Torch device the model runs on."""
    batch_size: int = 16
    """Images per forward pass."""

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def is_tiny(self) -> bool:
        return self.name.endswith("(tiny)")

    def image_features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N, D] float32 unit vectors for images [H, W, 3] in [0, 1] (any sizes)."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack(
                [self._preprocess(im) for im in images[start : start + self.batch_size]]
            )
            with torch.inference_mode():
                features = _pooled(self.model.get_image_features(pixel_values=batch))
            chunks.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        if not chunks:
            raise ValueError("images must not be empty")
        return np.concatenate(chunks)

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """[N, D] float32 unit vectors for texts (truncated to the model's context)."""
        if not texts:
            raise ValueError("texts must not be empty")
        max_length = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            features = _pooled(
                self.model.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
            )
        return F.normalize(features.float(), dim=-1).cpu().numpy()

    def _preprocess(self, image: np.ndarray) -> torch.Tensor:
        """CLIP's eval transform: shorter side to `image_size` (bicubic), centre crop, normalise."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None]
        height, width = tensor.shape[-2:]
        size = self.image_size
        scale = size / min(height, width)
        new_hw = (max(size, round(height * scale)), max(size, round(width * scale)))
        tensor = F.interpolate(tensor, size=new_hw, mode="bicubic", antialias=True).clamp(0, 1)
        top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
        tensor = tensor[0, :, top : top + size, left : left + size]
        mean = torch.tensor(_CLIP_MEAN).view(3, 1, 1)
        std = torch.tensor(_CLIP_STD).view(3, 1, 1)
        return ((tensor - mean) / std).to(self.device, dtype=self.model.dtype)


def _pooled(output: object) -> torch.Tensor:
    """transformers 5.x returns an output object with the projection in `pooler_output`."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output  # type: ignore[attr-defined]


def _load_real(name: str) -> object:
    def load(path: Path, device: str = "cpu") -> ClipEncoder:
        from transformers import CLIPModel, CLIPTokenizer

        model = CLIPModel.from_pretrained(str(path)).eval().to(device)
        tokenizer = CLIPTokenizer.from_pretrained(str(path))
        return ClipEncoder(model=model, tokenizer=tokenizer, name=name, device=device)

    return load


# --- tiny offline model -------------------------------------------------------------------


def _byte_unicode_table() -> list[str]:
    """The reversible byte -> printable character map of byte-level BPE (GPT-2, CLIP)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def build_tiny_tokenizer() -> object:
    """A CLIPTokenizer over single bytes (every byte and its end-of-word form), no merges."""
    from transformers import CLIPTokenizer

    chars = _byte_unicode_table()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in chars:
        vocab[char] = len(vocab)
    for char in chars:
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def build_tiny_clip(seed: int = 0, device: str = "cpu") -> ClipEncoder:
    """CLIPModel with 32-wide, 2-layer towers on 32 px images; seeded random weights."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    tokenizer = build_tiny_tokenizer()
    text = CLIPTextConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    config = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval().to(device)
    return ClipEncoder(
        model=model, tokenizer=tokenizer, name=f"{CLIP_VIT_L14} (tiny)", device=device
    )


def _tiny_named(name: str) -> object:
    def build(seed: int = 0, device: str = "cpu") -> ClipEncoder:
        encoder = build_tiny_clip(seed, device)
        encoder.name = f"{name} (tiny)"
        return encoder

    return build


register(
    ModelSpec(
        name=CLIP_VIT_L14,
        description="CLIP ViT-L/14 (OpenAI): CLIP directional and text-image scores",
        source=sources.CLIP_VIT_L14,
        load_real=_load_real(CLIP_VIT_L14),
        build_tiny=_tiny_named(CLIP_VIT_L14),
    )
)

register(
    ModelSpec(
        name=CLIP_VIT_B32,
        description="CLIP ViT-B/32 (OpenAI): the model of instruct-nerf2nerf's metric script",
        source=sources.CLIP_VIT_B32,
        load_real=_load_real(CLIP_VIT_B32),
        build_tiny=_tiny_named(CLIP_VIT_B32),
    )
)
