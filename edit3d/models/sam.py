"""Segment Anything (SAM) networks for ADSS's class-agnostic mask proposals (paper Sec. 3.2).

Registered names:

* ``sam-vit-h`` -> `segment_anything.modeling.Sam` (ViT-H, the paper's choice, ~2.4 GB)
* ``sam-vit-b`` -> `segment_anything.modeling.Sam` (ViT-B, ~375 MB, for smaller GPUs)

The tiny profile builds the same `Sam` class with a 2-block, 32-wide ViT on 64 px inputs
from a seed, offline. Its masks are random: a pipeline check, never a segmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from edit3d.models import sources
from edit3d.models.registry import ModelSpec, register

SAM_VIT_H = "sam-vit-h"
SAM_VIT_B = "sam-vit-b"

_ARCHITECTURES = {SAM_VIT_H: "vit_h", SAM_VIT_B: "vit_b"}
_SOURCES = {SAM_VIT_H: sources.SAM_VIT_H, SAM_VIT_B: sources.SAM_VIT_B}

# Sizes of the tiny model: a 64 px input in 16 px patches gives a 4x4 embedding grid.
_TINY_IMAGE = 64
_TINY_PATCH = 16
_TINY_WIDTH = 32


def _loader(name: str) -> Callable[[Path, str], torch.nn.Module]:
    def load_real(path: Path, device: str) -> torch.nn.Module:
        """Build the architecture and load the published checkpoint file at `path`."""
        from segment_anything import sam_model_registry

        checkpoint = Path(path)
        if checkpoint.is_dir():
            checkpoint = checkpoint / _SOURCES[name].filename
        model = sam_model_registry[_ARCHITECTURES[name]](checkpoint=str(checkpoint))
        return model.to(device).eval()

    return load_real


def build_tiny(seed: int, device: str) -> torch.nn.Module:
    """A seeded, randomly initialised miniature SAM (same class and API as the real one)."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = _TINY_IMAGE // _TINY_PATCH
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ImageEncoderViT(
            depth=2,
            embed_dim=_TINY_WIDTH,
            img_size=_TINY_IMAGE,
            patch_size=_TINY_PATCH,
            num_heads=2,
            window_size=2,
            global_attn_indexes=(1,),
            out_chans=_TINY_WIDTH,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            qkv_bias=True,
        )
        prompts = PromptEncoder(
            embed_dim=_TINY_WIDTH,
            image_embedding_size=(grid, grid),
            input_image_size=(_TINY_IMAGE, _TINY_IMAGE),
            mask_in_chans=16,
        )
        decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=_TINY_WIDTH, mlp_dim=64, num_heads=2
            ),
            transformer_dim=_TINY_WIDTH,
            iou_head_depth=3,
            iou_head_hidden_dim=_TINY_WIDTH,
        )
        model = Sam(
            encoder,
            prompts,
            decoder,
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    return model.to(device).eval()


register(
    ModelSpec(
        name=SAM_VIT_H,
        description="Segment Anything ViT-H: class-agnostic automatic masks (ADSS proposals)",
        source=sources.SAM_VIT_H,
        load_real=_loader(SAM_VIT_H),
        build_tiny=build_tiny,
    )
)

register(
    ModelSpec(
        name=SAM_VIT_B,
        description="Segment Anything ViT-B: smaller, less precise alternative to ViT-H",
        source=sources.SAM_VIT_B,
        load_real=_loader(SAM_VIT_B),
        build_tiny=build_tiny,
    )
)
