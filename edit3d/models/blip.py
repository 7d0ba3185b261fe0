"""BLIP-large networks for ADSS: captions and image-text-matching Grad-CAM (paper Sec. 3.2).

Registered names (both load to a `BlipBundle` of model + processor):

* ``blip-caption-large`` -> `BlipForConditionalGeneration` (Salesforce/blip-image-captioning-large)
* ``blip-itm-large-coco`` -> `BlipForImageTextRetrieval` (Salesforce/blip-itm-large-coco)

The tiny profile builds the same classes (text 32 wide, 3 layers, 4 heads; vision 48 px
input in 8 px patches, 32 wide, 2 layers) and a BertTokenizer over a small written vocabulary
that includes [DEC] and [ENC], from a seed, offline. Its captions and maps are random: a
pipeline check, never a result.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edit3d.models import sources
from edit3d.models.registry import ModelSpec, register

BLIP_CAPTION_LARGE = "blip-caption-large"
BLIP_ITM_LARGE_COCO = "blip-itm-large-coco"

DEC_TOKEN = "[DEC]"
ENC_TOKEN = "[ENC]"

# Words the tiny vocabulary spells whole; anything else falls back to single letters.
_TINY_WORDS = " ".join(
    (
        "a an the of picture with and in on is are his her him he she it its their",
        "person man woman girl boy head face hair torso shirt legs trousers pants shorts hat",
        "red green blue yellow white black brown gray orange purple",
        "cube sphere ball box floor ground table background object left right",
    )
).split()
_TINY_IMAGE = 48
_TINY_PATCH = 8
_TINY_WIDTH = 32


@dataclass
class BlipBundle:
    """A BLIP network with the processor (image preprocessing + tokenizer) it was trained with."""

    model: Any
    """`BlipForConditionalGeneration` or `BlipForImageTextRetrieval`, in eval mode."""
    processor: Any
    """`BlipProcessor`: `.image_processor` (384 px bicubic, CLIP mean/std) and `.tokenizer`."""
    name: str
    """Registered model name, with " (tiny)" for the random pipeline-check networks."""


def ensure_blip_special_tokens(tokenizer: Any, vocab_size: int) -> None:
    """Give the tokenizer BLIP's [DEC] (bos) and [ENC] tokens if its files lack them.

    LAVIS adds them in this order to the 30522-token BERT vocabulary, so they take ids
    30522 and 30523 of the checkpoint's 30524-row embedding table.
    """
    if tokenizer.convert_tokens_to_ids(DEC_TOKEN) in (None, tokenizer.unk_token_id):
        tokenizer.add_special_tokens({"bos_token": DEC_TOKEN})
    if tokenizer.convert_tokens_to_ids(ENC_TOKEN) in (None, tokenizer.unk_token_id):
        tokenizer.add_special_tokens({"additional_special_tokens": [ENC_TOKEN]})
    for token in (DEC_TOKEN, ENC_TOKEN):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if not 0 <= token_id < vocab_size:
            raise ValueError(
                f"tokenizer maps {token} to id {token_id}, outside the model's {vocab_size} "
                "embeddings: the tokenizer files do not belong to this checkpoint"
            )


def _real_loader(name: str, model_class_name: str) -> Callable[[Path, str], BlipBundle]:
    def load_real(path: Path, device: str) -> BlipBundle:
        """Load the transformers-format checkpoint folder at `path`."""
        import transformers

        model_class = getattr(transformers, model_class_name)
        model = model_class.from_pretrained(str(path)).to(device).eval()
        processor = transformers.BlipProcessor.from_pretrained(str(path))
        ensure_blip_special_tokens(processor.tokenizer, int(model.config.text_config.vocab_size))
        return BlipBundle(model, processor, name)

    return load_real


def tiny_vocabulary() -> list[str]:
    """The tiny tokenizer's vocabulary: BERT specials, some words, letters, [DEC], [ENC]."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = list(string.ascii_lowercase + string.digits)
    pieces = [f"##{c}" for c in letters]
    tokens = [*specials, *_TINY_WORDS, *letters, *pieces, *string.punctuation, DEC_TOKEN, ENC_TOKEN]
    return list(dict.fromkeys(tokens))  # "a" is both a word and a letter


def build_tiny_processor() -> Any:
    """A `BlipProcessor` for the tiny models: 48 px images and the tiny vocabulary."""
    from transformers import BertTokenizer, BlipImageProcessor, BlipProcessor

    vocab = tiny_vocabulary()
    # transformers 5.x builds the tokenizer from `vocab`; a vocab file path would be ignored.
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.add_special_tokens({"bos_token": DEC_TOKEN, "additional_special_tokens": [ENC_TOKEN]})
    images = BlipImageProcessor(size={"height": _TINY_IMAGE, "width": _TINY_IMAGE})
    return BlipProcessor(image_processor=images, tokenizer=tokenizer)


def tiny_config() -> Any:
    """`BlipConfig` of the tiny models (non-default initializer range keeps maps non-zero)."""
    from transformers import BlipConfig

    vocab = tiny_vocabulary()
    text = {
        "vocab_size": len(vocab),
        "hidden_size": _TINY_WIDTH,
        "encoder_hidden_size": _TINY_WIDTH,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "max_position_embeddings": 64,
        "bos_token_id": vocab.index(DEC_TOKEN),
        "pad_token_id": vocab.index("[PAD]"),
        "sep_token_id": vocab.index("[SEP]"),
        "eos_token_id": vocab.index("[SEP]"),
        "initializer_range": 0.02,
    }
    vision = {
        "image_size": _TINY_IMAGE,
        "patch_size": _TINY_PATCH,
        "hidden_size": _TINY_WIDTH,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "initializer_range": 0.02,
    }
    return BlipConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=_TINY_WIDTH,
        image_text_hidden_size=_TINY_WIDTH,
    )


def _tiny_builder(name: str, model_class_name: str) -> Callable[[int, str], BlipBundle]:
    def build_tiny(seed: int, device: str) -> BlipBundle:
        """A seeded random miniature with the real model's class and processor API."""
        import transformers

        model_class = getattr(transformers, model_class_name)
        torch.manual_seed(seed)  # load_model runs builders under a forked RNG
        model = model_class(tiny_config())
        return BlipBundle(model.to(device).eval(), build_tiny_processor(), f"{name} (tiny)")

    return build_tiny


register(
    ModelSpec(
        name=BLIP_CAPTION_LARGE,
        description="BLIP-large captioner (ADSS caption prefix)",
        source=sources.BLIP_CAPTION_LARGE,
        load_real=_real_loader(BLIP_CAPTION_LARGE, "BlipForConditionalGeneration"),
        build_tiny=_tiny_builder(BLIP_CAPTION_LARGE, "BlipForConditionalGeneration"),
    )
)

register(
    ModelSpec(
        name=BLIP_ITM_LARGE_COCO,
        description="BLIP-large image-text matching, COCO fine-tuned (ADSS Grad-CAM)",
        source=sources.BLIP_ITM_LARGE_COCO,
        load_real=_real_loader(BLIP_ITM_LARGE_COCO, "BlipForImageTextRetrieval"),
        build_tiny=_tiny_builder(BLIP_ITM_LARGE_COCO, "BlipForImageTextRetrieval"),
    )
)
