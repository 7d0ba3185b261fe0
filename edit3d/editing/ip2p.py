"""InstructPix2Pix editing of one rendered view, as instruct-nerf2nerf does it (paper Sec. 3.1).

One edit, in numbered steps:

1. resize the render and the condition image to the diffusion resolution;
2. encode the render with the VAE (posterior sample × scaling factor) and the condition
   image (posterior mode, unscaled);
3. draw T uniformly in ``[lower_bound, upper_bound] · num_train_timesteps`` and compress the
   DDIM schedule into ``[0, T)``: ``diffusion_steps`` steps spaced ``T // diffusion_steps``
   apart, computed on the full noise schedule. IN2N gets this by overwriting the scheduler's
   ``num_train_timesteps`` with T; here a fresh scheduler is built through the public
   ``from_config`` with ``num_train_timesteps=T`` and the original betas passed explicitly,
   which gives the same timesteps and the same alphas without mutating shared state;
4. noise the render latents to the first timestep of that schedule and denoise with 3-way
   classifier-free guidance, checking for cancellation before every UNet call and reporting
   each finished step to an optional `on_step(done, total)`;
5. decode and resize back to the input size.

Only diffusers' and transformers' public API is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edit3d.editing.settings import SIZE_MULTIPLE, EditorSettings
from edit3d.models.ip2p import IP2PComponents
from edit3d.progress import CancelToken

EMBEDDING_CACHE_SIZE = 16
"""Instructions whose text states are kept (a turn uses one; the sidecar may run many)."""

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (steps done, steps in this edit), like diffusers'
``callback_on_step_end``; raising ``edit3d.progress.Cancelled`` in it stops the edit."""


@dataclass(frozen=True)
class InstructPix2PixConfig(EditorSettings):
    """The editor's settings (see `EditorSettings`) with this editor's working resolution."""

    resolution: int | None = 512
    """Long side in pixels of the image the diffusion runs on; None keeps the input size."""
    seed: int = 0
    """Seed of the editor's own random stream, used when an edit gets no seed."""


def guided_noise(
    eps_text: torch.Tensor,
    eps_image: torch.Tensor,
    eps_uncond: torch.Tensor,
    text_scale: float,
    image_scale: float,
) -> torch.Tensor:
    """3-way classifier-free guidance of InstructPix2Pix.

    ``eps_text``: text + image conditioned; ``eps_image``: image only; ``eps_uncond``:
    neither. Returns ε_uncond + s_text(ε_text − ε_image) + s_image(ε_image − ε_uncond).
    """
    return eps_uncond + text_scale * (eps_text - eps_image) + image_scale * (eps_image - eps_uncond)


def diffusion_size(height: int, width: int, resolution: int | None) -> tuple[int, int]:
    """(height, width) of the diffusion image: long side ``resolution``, sides multiples of 8."""
    scale = 1.0 if resolution is None else resolution / max(height, width)

    def side(length: int) -> int:
        return max(SIZE_MULTIPLE, round(length * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE)

    return side(height), side(width)


def compressed_schedule(scheduler: Any, noise_level: int, steps: int) -> Any:
    """A copy of ``scheduler`` whose ``steps`` timesteps span ``[0, noise_level)``.

    Same as IN2N's schedule compression (``num_train_timesteps := T``) while keeping the
    full noise schedule: the original betas are passed explicitly, so every timestep keeps
    its alpha. ``set_timesteps`` has been called on the returned scheduler.
    """
    betas = scheduler.betas.detach().cpu().numpy()
    # The betas are final already: zero-SNR rescaling must not be applied a second time.
    compressed = type(scheduler).from_config(
        scheduler.config,
        num_train_timesteps=noise_level,
        trained_betas=betas,
        rescale_betas_zero_snr=False,
    )
    compressed.set_timesteps(steps)
    return compressed


class InstructPix2PixEditor:
    """Edits one rendered view following a text instruction (IN2N's procedure).

    ``edit`` is deterministic under a seed; without one, seeds are drawn from a stream
    started at ``config.seed``, so a whole run is reproducible. With the real weights on
    CUDA the networks take about 2.1 GB (fp16); ``benchmarks/gpu_ip2p_nerfacto.py`` reports
    the peak memory of an edit.
    """

    def __init__(
        self,
        components: IP2PComponents,
        config: InstructPix2PixConfig | None = None,
        *,
        is_pipeline_check: bool = False,
    ) -> None:
        self.components = components
        self.config = config or InstructPix2PixConfig()
        self.is_pipeline_check = is_pipeline_check
        """True when the networks are tiny random ones: outputs check the pipeline only."""
        self._seed_stream = torch.Generator("cpu").manual_seed(self.config.seed)
        self._embedding_cache: dict[str, torch.Tensor] = {}

    def with_settings(self, settings: EditorSettings) -> InstructPix2PixEditor:
        """This editor (same networks and text cache) editing with `settings`; a resolution
        of None keeps this editor's own."""
        changes = settings.to_dict()
        if changes["resolution"] is None:
            del changes["resolution"]
        configured = InstructPix2PixEditor(
            self.components,
            dataclasses.replace(self.config, **changes),
            is_pipeline_check=self.is_pipeline_check,
        )
        configured._embedding_cache = self._embedding_cache
        return configured

    def edit(
        self,
        render: np.ndarray,
        condition: np.ndarray,
        instruction: str,
        *,
        view_name: str,
        seed: int | None = None,
        cancel: CancelToken | None = None,
        on_step: StepCallback | None = None,
    ) -> np.ndarray:
        """Edit ``render`` ([H, W, 3] float in [0, 1]) conditioned on ``condition``.

        Returns float32 [H, W, 3] in [0, 1], the size of ``render``. Raises
        ``edit3d.progress.Cancelled`` between denoising steps when ``cancel`` is set;
        ``on_step(done, total)`` runs after every denoising step.
        ``view_name`` identifies the view (unused by this editor).
        """
        _check_image("render", render)
        _check_image("condition", condition)
        if not isinstance(instruction, str):
            raise ValueError(f"instruction must be a str, got {type(instruction).__name__}")
        generator = self._generator(seed)
        height, width = render.shape[:2]
        size = diffusion_size(height, width, self.config.resolution)
        with torch.inference_mode(), self._precision():
            embeddings = self._embeddings(instruction)
            latents = self._encode_render(self._to_tensor(render, size), generator)
            image_latents = self._encode_condition(self._to_tensor(condition, size))
            latents = self._denoise(latents, image_latents, embeddings, generator, cancel, on_step)
            edited = self._decode(latents)
        return _to_image(edited, (height, width))

    # -- steps -------------------------------------------------------------------------

    def _generator(self, seed: int | None) -> torch.Generator:
        """A CPU generator (same numbers on every device) for this edit."""
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=self._seed_stream))
        return torch.Generator("cpu").manual_seed(seed)

    def _precision(self) -> contextlib.AbstractContextManager[None]:
        if self.components.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _to_tensor(self, image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """[H, W, 3] in [0, 1] → [1, 3, h, w] in [-1, 1] at the diffusion size."""
        # Renders may overshoot [0, 1] slightly; the VAE expects exactly [-1, 1].
        pixels = torch.from_numpy(np.clip(image, 0.0, 1.0).astype(np.float32))
        pixels = pixels.permute(2, 0, 1)[None].to(self.components.device)
        pixels = _resize(pixels, size)
        return (pixels * 2.0 - 1.0).to(self.components.dtype)

    def _embeddings(self, instruction: str) -> torch.Tensor:
        """Text states stacked as [instruction, "", ""] for the 3-way guidance batch."""
        cached = self._embedding_cache.get(instruction)
        if cached is None:
            text = self._encode_text(instruction)
            empty = self._encode_text("")
            cached = torch.cat([text, empty, empty])
            if len(self._embedding_cache) >= EMBEDDING_CACHE_SIZE:
                self._embedding_cache.pop(next(iter(self._embedding_cache)))
            self._embedding_cache[instruction] = cached
        return cached

    def _encode_text(self, prompt: str) -> torch.Tensor:
        tokenizer = self.components.tokenizer
        tokens = tokenizer(
            prompt,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        input_ids = tokens.input_ids.to(self.components.device)
        return self.components.text_encoder(input_ids)[0].to(self.components.dtype)

    def _encode_render(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        vae = self.components.vae
        posterior = vae.encode(pixels).latent_dist
        return posterior.sample(generator=generator) * vae.config.scaling_factor

    def _encode_condition(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.components.vae.encode(pixels).latent_dist.mode()

    def _noise_level(self, generator: torch.Generator) -> int:
        """T drawn uniformly from the configured window of training timesteps."""
        total = self.components.scheduler.config.num_train_timesteps
        low = int(total * self.config.lower_bound)
        high = int(total * self.config.upper_bound)
        level = int(torch.randint(low, high + 1, (1,), generator=generator))
        # Each compressed step must span at least one training timestep.
        return max(level, self.config.diffusion_steps)

    def _denoise(
        self,
        latents: torch.Tensor,
        image_latents: torch.Tensor,
        embeddings: torch.Tensor,
        generator: torch.Generator,
        cancel: CancelToken | None,
        on_step: StepCallback | None,
    ) -> torch.Tensor:
        level = self._noise_level(generator)
        schedule = compressed_schedule(
            self.components.scheduler, level, self.config.diffusion_steps
        )
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
        noise = noise.to(latents.device, latents.dtype)
        timesteps = schedule.timesteps
        latents = schedule.add_noise(latents, noise, timesteps[:1])
        # Guidance batch: (text+image, image only, unconditional) share the noisy latents.
        image_batch = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])
        for done, timestep in enumerate(_checked(timesteps, cancel), start=1):
            model_input = schedule.scale_model_input(torch.cat([latents] * 3), timestep)
            model_input = torch.cat([model_input, image_batch], dim=1)
            eps = self.components.unet(
                model_input, timestep, encoder_hidden_states=embeddings
            ).sample
            eps_text, eps_image, eps_uncond = eps.chunk(3)
            guided = guided_noise(
                eps_text,
                eps_image,
                eps_uncond,
                self.config.guidance_scale,
                self.config.image_guidance_scale,
            )
            latents = schedule.step(guided, timestep, latents).prev_sample
            if on_step is not None:
                on_step(done, len(timesteps))
        return latents

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.components.vae
        decoded = vae.decode(latents / vae.config.scaling_factor).sample
        return (decoded.float() / 2.0 + 0.5).clamp(0.0, 1.0)


def _checked(timesteps: torch.Tensor, cancel: CancelToken | None) -> Iterator[torch.Tensor]:
    """Yield timesteps, raising Cancelled before any step once ``cancel`` is set."""
    for timestep in timesteps:
        if cancel is not None:
            cancel.raise_if_cancelled()
        yield timestep


def _resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(pixels.shape[-2:]) == size:
        return pixels
    return F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)


def _to_image(pixels: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """[1, 3, h, w] in [0, 1] → float32 [H, W, 3] at ``size``."""
    pixels = _resize(pixels.float(), size).clamp(0.0, 1.0)
    return pixels[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)


def _check_image(argument: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{argument} must be a [H, W, 3] numpy array, got {shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{argument} must not be empty, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{argument} holds non-finite values")
