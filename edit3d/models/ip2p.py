"""InstructPix2Pix model family: real loader and a tiny offline builder.

Both return the same :class:`IP2PComponents` bundle (UNet, VAE, CLIP text encoder,
tokenizer, DDIM scheduler), which :class:`edit3d.editing.ip2p.InstructPix2PixEditor`
drives through diffusers' public API. The tiny bundle is a seeded, randomly initialised
miniature for tests and CI: its outputs are pipeline checks, never edits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edit3d.models.registry import ModelSpec, register
from edit3d.models.sources import INSTRUCT_PIX2PIX

MODEL_NAME = "instruct-pix2pix"
"""Registry name of the InstructPix2Pix family."""

TINY_TOKEN_LIMIT = 77
"""Token limit of the tiny tokenizer (the same as CLIP's)."""

IN2N_DDIM_SETTINGS = {"clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}
"""DDIM settings instruct-nerf2nerf gets by reading Stable Diffusion 1.4's scheduler config.
The instruct-pix2pix repository ships an EulerAncestral config without them, so a DDIM
scheduler read from it alone would clip x0 to [-1, 1] and end on alpha 1 (DDIM's defaults)."""


@dataclass
class IP2PComponents:
    """The networks and helpers one InstructPix2Pix edit needs.

    Any field may be replaced by an object with the same public API (tests inject
    stand-ins through this bundle).
    """

    unet: Any
    """Denoiser: ``UNet2DConditionModel`` with 8 input channels (noisy + condition latents)."""
    vae: Any
    """``AutoencoderKL`` mapping images in [-1, 1] to latents and back."""
    text_encoder: Any
    """``CLIPTextModel`` producing the cross-attention states for an instruction."""
    tokenizer: Any
    """``CLIPTokenizer`` matching the text encoder's vocabulary."""
    scheduler: Any
    """``DDIMScheduler`` whose betas and config define the noise schedule."""

    @property
    def device(self) -> torch.device:
        """Device of the VAE (all networks live on one device)."""
        return self.vae.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the VAE weights (float16 on CUDA for real weights)."""
        return self.vae.dtype


def load_real(path: Path, device: str) -> IP2PComponents:
    """Load the published InstructPix2Pix weights from a local diffusers-layout folder.

    ``path`` holds ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/`` and
    ``scheduler/`` (a hub snapshot). Weights are fp16 on CUDA and fp32 elsewhere; the
    scheduler is DDIM over the repository's noise schedule with IN2N's settings
    (`IN2N_DDIM_SETTINGS`).
    Memory: 1.07 B parameters, about 2.1 GB in fp16.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
    root = Path(path)
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype)
    text_encoder = CLIPTextModel.from_pretrained(root, subfolder="text_encoder", dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
    scheduler = DDIMScheduler.from_pretrained(root, subfolder="scheduler", **IN2N_DDIM_SETTINGS)
    return _finish(IP2PComponents(unet, vae, text_encoder, tokenizer, scheduler), device)


def build_tiny(seed: int, device: str) -> IP2PComponents:
    """Build a seeded, randomly initialised miniature IP2P bundle offline (a pipeline check).

    UNet 32/64 channels with 8 input channels and 32-wide cross-attention, a two-level
    AutoencoderKL (latent = image / 2), a 32-hidden CLIP text encoder and a byte-level
    CLIP tokenizer; the scheduler has SD's noise schedule. Builds in ~0.1 s on CPU.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    torch.manual_seed(seed + 2)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        max_position_embeddings=TINY_TOKEN_LIMIT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)
    components = IP2PComponents(unet, vae, text_encoder, tokenizer, sd_ddim_scheduler())
    return _finish(components, device)


def sd_ddim_scheduler() -> Any:
    """A DDIM scheduler with the noise schedule of InstructPix2Pix's scheduler config."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        **IN2N_DDIM_SETTINGS,
    )


def byte_alphabet() -> list[str]:
    """The 256 printable characters standing for the bytes 0..255 in byte-level BPE.

    Printable Latin-1 bytes stand for themselves; the others are shifted past 255 so that
    every byte has a visible, whitespace-free character.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


def build_tiny_tokenizer() -> Any:
    """A CLIP tokenizer built in memory: byte-level vocabulary, no merges.

    Every word becomes one token per byte (the last one with CLIP's ``</w>`` suffix), so
    different instructions get different ids without any downloaded vocabulary. In
    transformers 5.x the vocabulary must be passed as objects: the file-path constructor
    silently ignores its files.
    """
    from transformers import CLIPTokenizer

    alphabet = byte_alphabet()
    tokens = [*alphabet, *(char + "</w>" for char in alphabet)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TINY_TOKEN_LIMIT)


def _finish(components: IP2PComponents, device: str) -> IP2PComponents:
    """Move the networks to ``device`` and switch them to inference mode."""
    for network in (components.unet, components.vae, components.text_encoder):
        network.to(device)
        network.eval()
        network.requires_grad_(False)
    return components


register(
    ModelSpec(
        name=MODEL_NAME,
        description="InstructPix2Pix (SD 1.5 fine-tuned for text-instructed image edits)",
        source=INSTRUCT_PIX2PIX,
        load_real=load_real,
        build_tiny=build_tiny,
    )
)
