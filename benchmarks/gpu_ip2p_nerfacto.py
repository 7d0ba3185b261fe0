"""GPU timing of one Edit3D turn's costs: InstructPix2Pix edits and field iterations (nerfacto,
splatfacto).

Measures, on one device:

* seconds per InstructPix2Pix edit with a full-size, randomly initialised network
  (SD1.5-shaped UNet with 8 input channels, SD VAE, CLIP ViT-L/14 text encoder) in fp16,
  20 DDIM steps, 3-way classifier-free guidance, through the project's
  ``InstructPix2PixEditor`` (random weights cost the same time as the published ones);
* seconds of one edit preview at 512 px (what ``job.preview_edit`` runs in the warm worker
  between the click and the image: render a 512×384 camera from the field, fuse mask (no
  queries: the whole view), the edit above, fusion), through ``edit3d.editing.view_edit``,
  next to the 3 s target;
* nerfacto training iterations per second at 4096 rays (forward, losses, backward, Adam;
  fp16 autocast on CUDA as ``ns-train nerfacto`` does), and render throughput for the
  turn's pre-render of every view;

* splatfacto (3D Gaussian splatting, ``edit3d.field`` splatfacto backend) training
  iterations per second on whole images of the sample scene, peak memory and a view render
  (gsplat's CUDA kernels; ``--smoke`` uses the PyTorch rasterizer on the CPU);

then projects the time of a 10k-iteration turn that edits one view every 10 iterations, for
nerfacto and for splatfacto, and prints both next to the paper's 44.62 min on an RTX 3090
(Tab. 2, 497×369 images).

    python benchmarks/gpu_ip2p_nerfacto.py                 # CUDA, full size
    python benchmarks/gpu_ip2p_nerfacto.py --smoke         # CPU, tiny sizes (plumbing check)
    python benchmarks/gpu_ip2p_nerfacto.py --json out.json # also write the numbers

Budget on a lent GPU: one call (imports, building the random SD-sized networks, 6 edits,
4 edit previews, 2 × 220 nerfacto iterations and a few renders); nothing is downloaded.

The nerfacto settings come from the field preset (``edit3d.field.presets``, "paper" by
default) when that module is present, else from nerfstudio's nerfacto defaults (the same
numbers). The hash grid runs on tiny-cuda-nn when it is installed, else on nerfstudio's
torch implementation (slower); the output says which. Data loading is not timed: turns
keep every target image in memory and sample rays from it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

PAPER_TURN_MINUTES = 44.62
"""Paper Tab. 2: one 10k-iteration editing turn on an RTX 3090 at 497×369."""
PAPER_IMAGE_SIZE = (369, 497)
"""(height, width) of the paper's timed scene."""
PREVIEW_TARGET_SECONDS = 3.0
"""Target from click to image of one edit preview at 512 px on a GPU."""


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What one run measures and on which sizes."""

    device: str
    """torch device ("cuda" or "cpu")."""
    full_size_ip2p: bool
    """SD1.5-sized random IP2P in fp16 (else the tiny offline bundle)."""
    diffusion_resolution: int
    """Long side of the diffusion image."""
    diffusion_steps: int
    """DDIM steps per edit."""
    edits: int
    """Timed edits (after one warm-up edit)."""
    field_preset: str
    """Field preset name for the nerfacto settings."""
    rays: int
    """Rays per training iteration."""
    warmup_iters: int
    """Untimed nerfacto iterations first (allocator, kernels, proposal schedule)."""
    iters: int
    """Timed nerfacto iterations."""
    render_chunks: int
    """Timed no-grad render chunks for the pre-render throughput."""
    turn_iters: int
    """Iterations of the projected turn."""
    edit_rate: int
    """Iterations between edits in the projected turn."""
    views: int
    """Views pre-rendered at the start of the projected turn."""
    preview_long_side: int = 512
    """Long side of the edit preview's camera (4:3)."""
    previews: int = 3
    """Timed edit previews (after one warm-up preview)."""


def full_size_ip2p(device: str) -> Any:
    """IP2P-shaped networks at Stable Diffusion 1.5 size, random weights, fp16 on CUDA."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from edit3d.models.ip2p import IP2PComponents, build_tiny_tokenizer, sd_ddim_scheduler

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    tokenizer = build_tiny_tokenizer()  # ids fit CLIP's vocabulary; cost is in the networks
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=8,
            out_channels=4,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
            scaling_factor=0.18215,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    for network in (unet, vae, text_encoder):
        if dtype != torch.float32:
            network.to(dtype=dtype)
        network.eval().requires_grad_(False)
    return IP2PComponents(unet, vae, text_encoder, tokenizer, sd_ddim_scheduler())


def build_editor(settings: BenchSettings) -> Any:
    """The project's InstructPix2Pix editor on the benchmark's networks (built once)."""
    from edit3d.editing.ip2p import InstructPix2PixConfig, InstructPix2PixEditor
    from edit3d.models.ip2p import build_tiny

    if settings.full_size_ip2p:
        components = full_size_ip2p(settings.device)
    else:
        components = build_tiny(seed=0, device=settings.device)
    config = InstructPix2PixConfig(
        resolution=settings.diffusion_resolution, diffusion_steps=settings.diffusion_steps
    )
    return InstructPix2PixEditor(components, config, is_pipeline_check=True)


def time_edits(settings: BenchSettings, editor: Any) -> dict[str, Any]:
    """Seconds per edit of a paper-sized render (warm-up edit excluded)."""
    from edit3d.editing.ip2p import diffusion_size

    components = editor.components
    render = np.random.default_rng(0).random((*PAPER_IMAGE_SIZE, 3)).astype(np.float32)
    instruction = "give him a cowboy hat"

    def one_edit(seed: int) -> None:
        editor.edit(render, render, instruction, view_name="bench.png", seed=seed)

    _reset_peak_memory(settings.device)
    seconds = _timed_repeats(one_edit, settings.edits, settings.device)
    return {
        "ip2p_network": "SD1.5-shaped, random weights" if settings.full_size_ip2p else "tiny",
        "ip2p_dtype": str(components.dtype),
        "diffusion_size_hw": diffusion_size(*PAPER_IMAGE_SIZE, settings.diffusion_resolution),
        "diffusion_steps": settings.diffusion_steps,
        "edit_seconds": seconds,
        "edit_seconds_mean": float(np.mean(seconds)),
        "edit_peak_memory_gib": _peak_memory_gib(settings.device),
    }


def time_preview(settings: BenchSettings, editor: Any) -> dict[str, Any]:
    """Seconds of one edit preview of a new camera, as the warm sidecar worker runs
    ``job.preview_edit``: render, mask, edit, fuse (``edit3d.editing.view_edit``). Returns
    {"error": ...} when the field module cannot run."""
    try:
        from edit3d.editing.turns import TurnSpec
        from edit3d.editing.view_edit import preview_edit
        from edit3d.field import field_from_dataset, get_preset
        from edit3d.scene.cameras import CameraView
        from edit3d.scene.sample import make_sample_scene
    except ImportError as error:
        return {"error": f"edit3d.field not available: {error}"}
    width = settings.preview_long_side
    height = width * 3 // 4
    with tempfile.TemporaryDirectory() as folder:
        scene = make_sample_scene(Path(folder) / "scene", num_views=24, resolution=64)
        field = field_from_dataset(scene.root, get_preset(settings.field_preset), settings.device)
        dataset_view = field.views[0]
        camera = CameraView(
            "new camera", dataset_view.c2w, dataset_view.intrinsics.scaled_to(width, height)
        )
        spec = TurnSpec("give him a cowboy hat")
        seconds = _timed_repeats(
            lambda i: preview_edit(field, camera, spec, editor, seed=max(i, 0)),
            settings.previews,
            settings.device,
        )
    return {
        "preview_size_hw": [height, width],
        "preview_seconds": seconds,
        "preview_seconds_mean": float(np.mean(seconds)),
        "preview_target_seconds": PREVIEW_TARGET_SECONDS,
    }


def nerfacto_config(settings: BenchSettings) -> tuple[Any, str]:
    """nerfstudio's NerfactoModelConfig from the field preset (or nerfstudio's defaults)."""
    try:
        from edit3d.field.presets import get_preset
    except ImportError:
        get_preset = None
    if get_preset is not None:
        return get_preset(settings.field_preset).nerfacto_config(settings.device), (
            f"edit3d.field preset {settings.field_preset!r}"
        )
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    implementation = "tcnn" if settings.device.startswith("cuda") and _has_tcnn() else "torch"
    return NerfactoModelConfig(implementation=implementation), "nerfstudio nerfacto defaults"


def build_nerfacto(config: Any, num_images: int, device: str) -> Any:
    """A nerfacto model for a unit scene box, built with no network access.

    nerfacto's constructor builds an LPIPS metric that downloads AlexNet weights; LPIPS only
    feeds evaluation metrics, so the benchmark builds the model with that class replaced.
    """
    from nerfstudio.data.scene_box import SceneBox

    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    with mock.patch(
        "torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity",
        lambda **_: torch.nn.Identity(),
    ):
        model = config.setup(scene_box=SceneBox(aabb=aabb), num_train_data=num_images, metadata={})
    return model.to(device)


def random_rays(count: int, num_images: int, device: str, generator: torch.Generator) -> Any:
    """Rays from a sphere of radius 2 towards the scene centre, with random camera ids."""
    from nerfstudio.cameras.rays import RayBundle

    origins = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    origins = 2.0 * origins
    directions = -origins + 0.6 * torch.randn(count, 3, generator=generator)
    directions = torch.nn.functional.normalize(directions, dim=-1)
    return RayBundle(
        origins=origins.to(device),
        directions=directions.to(device),
        pixel_area=torch.full((count, 1), (1.0 / 500.0) ** 2, device=device),
        camera_indices=torch.randint(0, num_images, (count, 1), generator=generator).to(device),
    )


def time_nerfacto(settings: BenchSettings) -> dict[str, Any]:
    """Training iterations per second and no-grad render rays per second."""
    config, origin = nerfacto_config(settings)
    model = build_nerfacto(config, settings.views, settings.device)
    optimizer = _adam(model)
    callbacks = _training_callbacks(model)
    use_amp = settings.device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    generator = torch.Generator().manual_seed(0)
    step = 0

    def train_iteration(_: int) -> None:
        nonlocal step
        rays = random_rays(settings.rays, settings.views, settings.device, generator)
        target = torch.rand(settings.rays, 3, generator=generator).to(settings.device)
        _run_callbacks(callbacks, step, before=True)
        with torch.autocast(device_type="cuda", enabled=use_amp):
            outputs = model(rays)
            batch = {"image": target}
            metrics = model.get_metrics_dict(outputs, batch)
            loss = sum(model.get_loss_dict(outputs, batch, metrics).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _run_callbacks(callbacks, step, before=False)
        step += 1

    model.train()
    for _ in range(settings.warmup_iters):
        train_iteration(0)
    _reset_peak_memory(settings.device)
    seconds = _timed_total(train_iteration, settings.iters, settings.device)
    train_memory = _peak_memory_gib(settings.device)
    render_rays_per_s = _render_throughput(model, settings, generator)
    return {
        "nerfacto_settings": origin,
        "hash_grid": getattr(config, "implementation", "?"),
        "rays_per_iter": settings.rays,
        "iters_per_s": settings.iters / seconds,
        "iter_seconds": seconds / settings.iters,
        "train_peak_memory_gib": train_memory,
        "render_rays_per_s": render_rays_per_s,
    }


def time_edit3d_field(settings: BenchSettings) -> dict[str, Any]:
    """The project's own training step and renderer (``edit3d.field``) on the sample scene.

    This is the loop a turn runs: rays sampled from in-memory targets, nerfacto step, and a
    full render of a paper-sized view for the pre-render. Returns {"error": ...} when the
    field module cannot run, so the nerfstudio numbers above still come out.
    """
    try:
        from edit3d.field import field_from_dataset, get_preset
        from edit3d.scene.sample import make_sample_scene
    except ImportError as error:
        return {"error": f"edit3d.field not available: {error}"}
    height, width = PAPER_IMAGE_SIZE
    with tempfile.TemporaryDirectory() as folder:
        scene = make_sample_scene(Path(folder) / "scene", num_views=24, resolution=64)
        # Mixed precision (autocast + grad scaler, as ns-train) applies on CUDA only; the
        # default (mixed on CUDA) runs last, so the figures below are the default's.
        precisions = (False, True) if settings.device.startswith("cuda") else (False,)
        iters_per_s = {}
        for mixed in precisions:
            config = dataclasses.replace(
                get_preset(settings.field_preset),
                rays_per_batch=settings.rays,
                mixed_precision=mixed,
            )
            field = field_from_dataset(scene.root, config, settings.device)
            targets = field.make_targets(field.dataset_images())
            for _ in range(settings.warmup_iters):
                field.train_step(targets, lr=2.5e-3)
            _reset_peak_memory(settings.device)
            seconds = _timed_total(
                lambda _, f=field, t=targets: f.train_step(t, lr=2.5e-3),
                settings.iters,
                settings.device,
            )
            train_memory = _peak_memory_gib(settings.device)
            iters_per_s["mixed" if mixed else "fp32"] = settings.iters / seconds
        render_size = (height, width) if settings.full_size_ip2p else (48, 64)
        view = field.views[0]
        render_seconds = _timed_repeats(
            lambda _: field.render(view, width=render_size[1], height=render_size[0]),
            2,
            settings.device,
        )
    per_view = float(np.mean(render_seconds)) * (height * width) / (render_size[0] * render_size[1])
    return {
        "field_settings": f"edit3d.field preset {settings.field_preset!r}, sample scene",
        "rays_per_iter": settings.rays,
        "iters_per_s": settings.iters / seconds,
        "iters_per_s_by_precision": iters_per_s,
        "iter_seconds": seconds / settings.iters,
        "train_peak_memory_gib": train_memory,
        "render_size_hw": render_size,
        "render_seconds": render_seconds,
        "paper_view_render_seconds": per_view,
    }


def time_splatfacto(settings: BenchSettings) -> dict[str, Any]:
    """The splatfacto backend's training step (one whole view per iteration) and renders.

    Sample scene at the paper's image size (smoke: 32 px), the field preset's splatfacto
    settings with gsplat's CUDA rasterizer ("torch" on the CPU). Returns {"error": ...}
    when the backend cannot run, so the other numbers still come out.
    """
    try:
        from edit3d.field import field_from_dataset, get_preset
        from edit3d.scene.sample import make_sample_scene
    except ImportError as error:
        return {"error": f"edit3d.field not available: {error}"}
    height, width = PAPER_IMAGE_SIZE
    resolution = max(height, width) if settings.full_size_ip2p else 32
    config = dataclasses.replace(
        get_preset(settings.field_preset, "splatfacto"),
        rasterizer="cuda" if settings.device.startswith("cuda") else "torch",
    )
    with tempfile.TemporaryDirectory() as folder:
        # num_points=0: the preset's random start (num_random Gaussians), the workload
        # these figures have always measured, not the scene's 4000 sparse points.
        scene = make_sample_scene(
            Path(folder) / "scene", num_views=24, resolution=resolution, num_points=0
        )
        field = field_from_dataset(scene.root, config, settings.device)
        field.model.strategy.verbose = False
        targets = field.make_targets(field.dataset_images())
        for _ in range(settings.warmup_iters):
            field.train_step(targets, lr=config.edit_lr)
        _reset_peak_memory(settings.device)
        seconds = _timed_total(
            lambda _: field.train_step(targets, lr=config.edit_lr), settings.iters, settings.device
        )
        train_memory = _peak_memory_gib(settings.device)
        view = field.views[0]
        render_seconds = _timed_repeats(lambda _: field.render(view), 2, settings.device)
    image_h, image_w = field.training_size(view)
    per_view = float(np.mean(render_seconds)) * (height * width) / (image_h * image_w)
    return {
        "field_settings": f"splatfacto preset {settings.field_preset!r}, {config.rasterizer} "
        f"rasterizer, sample scene {image_w}x{image_h}",
        "gaussians": field.num_gaussians,
        "iters_per_s": settings.iters / seconds,
        "iter_seconds": seconds / settings.iters,
        "train_peak_memory_gib": train_memory,
        "render_seconds": render_seconds,
        "paper_view_render_seconds": per_view,
    }


def project_splat_turn(settings: BenchSettings, edits: dict, splat: dict) -> dict[str, Any]:
    """Minutes of one splatfacto turn (same edits and pre-render count as nerfacto's)."""
    if "error" in splat:
        return {"error": splat["error"]}
    edit_count = settings.turn_iters // settings.edit_rate
    train_min = settings.turn_iters * splat["iter_seconds"] / 60.0
    edit_min = edit_count * edits["edit_seconds_mean"] / 60.0
    prerender_min = settings.views * splat["paper_view_render_seconds"] / 60.0
    return {
        "train_minutes": train_min,
        "edits": edit_count,
        "edit_minutes": edit_min,
        "seconds_per_edit": edits["edit_seconds_mean"],
        "prerender_minutes": prerender_min,
        "edit3d_turn_minutes": train_min + edit_min + prerender_min,
    }


def project_turn(
    settings: BenchSettings, edits: dict, nerf: dict, field: dict
) -> dict[str, float | str]:
    """Minutes of one turn: iterations + one edit per edit_rate iterations (+ pre-render).

    Uses the project's own loop (``field``) when it ran, else the bare nerfstudio model.
    """
    height, width = PAPER_IMAGE_SIZE
    if "error" not in field:
        basis = "edit3d.field"
        iter_seconds = field["iter_seconds"]
        prerender_min = settings.views * field["paper_view_render_seconds"] / 60.0
    else:
        basis = "nerfstudio model"
        iter_seconds = nerf["iter_seconds"]
        prerender_min = settings.views * height * width / nerf["render_rays_per_s"] / 60.0
    train_min = settings.turn_iters * iter_seconds / 60.0
    edit_count = settings.turn_iters // settings.edit_rate
    edit_min = edit_count * edits["edit_seconds_mean"] / 60.0
    # With an editor pool the training process still renders every view it hands out.
    render_min = edit_count * prerender_min / max(settings.views, 1)
    return {
        "basis": basis,
        "train_minutes": train_min,
        "edits": edit_count,
        "edit_minutes": edit_min,
        "prerender_minutes": prerender_min,
        "in2n_turn_minutes": train_min + edit_min,
        "edit3d_turn_minutes": train_min + edit_min + prerender_min,
        "pool_turn_minutes": {
            gpus: pool_turn_minutes(train_min + render_min, edit_min, gpus) + prerender_min
            for gpus in POOL_GPUS
        },
    }


POOL_GPUS = (1, 2, 4, 8)
"""Editor GPUs the projection of an editor-pool turn is printed for."""


def pool_turn_minutes(field_minutes: float, edit_minutes: float, editor_gpus: int) -> float:
    """A turn with `editor_gpus` editors working while the field trains (docs/cluster.md):
    the slower of the field's own work and the edits shared among the editors (the bound
    once enough editors keep up with the field is the field's step)."""
    return max(field_minutes, edit_minutes / editor_gpus)


def report(
    settings: BenchSettings,
    edits: dict,
    nerf: dict,
    field: dict,
    turn: dict,
    device: str,
    splat: dict,
    splat_turn: dict,
    preview: dict | None = None,
) -> str:
    height, width = PAPER_IMAGE_SIZE
    dh, dw = edits["diffusion_size_hw"]
    lines = [
        f"device: {device}",
        f"IP2P ({edits['ip2p_network']}, {edits['ip2p_dtype']}): {dw}x{dh} diffusion from a "
        f"{width}x{height} render, {edits['diffusion_steps']} DDIM steps, 3-way CFG",
        f"  seconds per edit: mean {edits['edit_seconds_mean']:.3f} "
        f"(runs: {', '.join(f'{s:.3f}' for s in edits['edit_seconds'])}); "
        f"peak memory {edits['edit_peak_memory_gib']:.2f} GiB",
        f"nerfacto ({nerf['nerfacto_settings']}, hash grid: {nerf['hash_grid']}), "
        f"{nerf['rays_per_iter']} rays/iter",
        f"  iterations per second: {nerf['iters_per_s']:.2f} "
        f"({1000 * nerf['iter_seconds']:.1f} ms/iter); peak memory "
        f"{nerf['train_peak_memory_gib']:.2f} GiB; render {nerf['render_rays_per_s']:.0f} rays/s",
        *_preview_lines(preview or {"error": "not measured"}),
        *_field_lines(field),
        f"projected {settings.turn_iters}-iteration turn ({turn['basis']} timings), one edit "
        f"every {settings.edit_rate} iterations ({turn['edits']} edits), {settings.views} "
        f"views of {width}x{height}:",
        f"  training {turn['train_minutes']:.2f} min + edits {turn['edit_minutes']:.2f} min "
        f"= {turn['in2n_turn_minutes']:.2f} min (IN2N-style turn)",
        f"  + pre-render {turn['prerender_minutes']:.2f} min "
        f"= {turn['edit3d_turn_minutes']:.2f} min (Edit3D turn)",
        f"  paper (Tab. 2, RTX 3090): {PAPER_TURN_MINUTES:.2f} min per 10k-iteration edit; "
        f"ratio here / paper = {turn['edit3d_turn_minutes'] / PAPER_TURN_MINUTES:.2f}"
        + ("" if settings.turn_iters == 10_000 else " (different iteration count!)"),
        "  editor pool (edits on other GPUs while the field trains; field renders each view "
        "it hands out): "
        + ", ".join(
            f"{gpus} GPU{'s' if gpus > 1 else ''} {minutes:.2f} min"
            for gpus, minutes in turn["pool_turn_minutes"].items()
        ),
    ]
    lines += _splat_lines(settings, splat, splat_turn)
    if not settings.full_size_ip2p:
        lines.append("  SMOKE RUN: tiny networks; these numbers say nothing about real timings")
    return "\n".join(lines)


def _splat_lines(settings: BenchSettings, splat: dict, turn: dict) -> list[str]:
    if "error" in splat:
        return [f"splatfacto: not measured ({splat['error']})"]
    return [
        f"splatfacto ({splat['field_settings']}), {splat['gaussians']} Gaussians after "
        f"{settings.warmup_iters + settings.iters} iterations",
        f"  iterations per second: {splat['iters_per_s']:.2f} "
        f"({1000 * splat['iter_seconds']:.1f} ms/iter); peak memory "
        f"{splat['train_peak_memory_gib']:.2f} GiB; view render "
        f"{np.mean(splat['render_seconds']):.3f} s",
        f"projected {settings.turn_iters}-iteration splatfacto turn: training "
        f"{turn['train_minutes']:.2f} min + edits {turn['edit_minutes']:.2f} min "
        f"({turn['seconds_per_edit']:.2f} s per edit) + pre-render "
        f"{turn['prerender_minutes']:.2f} min = {turn['edit3d_turn_minutes']:.2f} min; "
        f"ratio splatfacto / paper = {turn['edit3d_turn_minutes'] / PAPER_TURN_MINUTES:.2f}",
    ]


def _preview_lines(preview: dict) -> list[str]:
    if "error" in preview:
        return [f"edit preview: not measured ({preview['error']})"]
    height, width = preview["preview_size_hw"]
    mean = preview["preview_seconds_mean"]
    return [
        f"edit preview of a new {width}x{height} camera (render, mask: whole view, edit, "
        f"fuse; warm worker)",
        f"  seconds per preview: mean {mean:.3f} "
        f"(runs: {', '.join(f'{s:.3f}' for s in preview['preview_seconds'])}); "
        f"target {preview['preview_target_seconds']:.1f} s, ratio "
        f"{mean / preview['preview_target_seconds']:.2f}",
    ]


def _field_lines(field: dict) -> list[str]:
    if "error" in field:
        return [f"edit3d.field loop: not measured ({field['error']})"]
    rh, rw = field["render_size_hw"]
    return [
        f"edit3d.field loop ({field['field_settings']}), {field['rays_per_iter']} rays/iter",
        f"  iterations per second: {field['iters_per_s']:.2f} "
        f"({1000 * field['iter_seconds']:.1f} ms/iter); peak memory "
        f"{field['train_peak_memory_gib']:.2f} GiB; {rw}x{rh} render "
        f"{np.mean(field['render_seconds']):.3f} s",
        "  iterations per second by precision: "
        + ", ".join(f"{k} {v:.2f}" for k, v in field["iters_per_s_by_precision"].items())
        + ("" if "mixed" in field["iters_per_s_by_precision"] else " (mixed: CUDA only)"),
    ]


# -- helpers ---------------------------------------------------------------------------


def _has_tcnn() -> bool:
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return False
    return True


def _adam(model: Any) -> torch.optim.Optimizer:
    """One Adam over nerfstudio's param groups (paper: 0.0025 NeRF during edits, 3e-4 camera).

    A single optimizer, so the AMP grad scaler never meets an optimizer without gradients.
    """
    rates = {"fields": 2.5e-3, "proposal_networks": 2.5e-3, "camera_opt": 3e-4}
    groups = [
        {"params": params, "lr": rates.get(name, 2.5e-3)}
        for name, params in model.get_param_groups().items()
        if params
    ]
    return torch.optim.Adam(groups, eps=1e-15)


def _training_callbacks(model: Any) -> list[Any]:
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes

    attributes = TrainingCallbackAttributes(
        optimizers=None, grad_scaler=None, pipeline=None, trainer=None
    )
    return model.get_training_callbacks(attributes)


def _run_callbacks(callbacks: list[Any], step: int, *, before: bool) -> None:
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    where = (
        TrainingCallbackLocation.BEFORE_TRAIN_ITERATION
        if before
        else TrainingCallbackLocation.AFTER_TRAIN_ITERATION
    )
    for callback in callbacks:
        callback.run_callback_at_location(step, location=where)


def _render_throughput(model: Any, settings: BenchSettings, generator: torch.Generator) -> float:
    chunk = int(getattr(model.config, "eval_num_rays_per_chunk", 4096))
    if not settings.full_size_ip2p:
        chunk = min(chunk, settings.rays)
    model.eval()

    def render_chunk(_: int) -> None:
        rays = random_rays(chunk, settings.views, settings.device, generator)
        with torch.no_grad():
            model(rays)

    render_chunk(0)
    seconds = _timed_total(render_chunk, settings.render_chunks, settings.device)
    model.train()
    return chunk * settings.render_chunks / seconds


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_total(work: Callable[[int], None], repeats: int, device: str) -> float:
    _synchronize(device)
    start = time.perf_counter()
    for index in range(repeats):
        work(index)
    _synchronize(device)
    return time.perf_counter() - start


def _timed_repeats(work: Callable[[int], None], repeats: int, device: str) -> list[float]:
    """Seconds of each call after one untimed warm-up call."""
    work(-1)
    return [_timed_total(lambda _, i=i: work(i), 1, device) for i in range(repeats)]


def _reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_gib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return float("nan")


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()} (torch {torch.__version__})"


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Nothing here may download: random networks only."""
    import os

    saved = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({name: "1" for name in saved})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def parse_settings(argv: list[str] | None) -> tuple[BenchSettings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU (plumbing)")
    parser.add_argument("--device", default=None, help="torch device (default cuda; cpu smoke)")
    parser.add_argument("--edits", type=int, default=None, help="timed edits")
    parser.add_argument("--iters", type=int, default=None, help="timed nerfacto iterations")
    parser.add_argument("--rays", type=int, default=4096, help="rays per nerfacto iteration")
    parser.add_argument("--preset", default=None, help="field preset (paper; smoke: tiny)")
    parser.add_argument("--resolution", type=int, default=512, help="diffusion long side")
    parser.add_argument("--turn-iters", type=int, default=10_000)
    parser.add_argument("--edit-rate", type=int, default=10)
    parser.add_argument("--views", type=int, default=100, help="views pre-rendered per turn")
    parser.add_argument(
        "--preview-size",
        type=int,
        default=None,
        help="long side of the edit preview camera (512; smoke: 64)",
    )
    parser.add_argument("--previews", type=int, default=None, help="timed edit previews")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    smoke = args.smoke
    settings = BenchSettings(
        device=args.device or ("cpu" if smoke else "cuda"),
        full_size_ip2p=not smoke,
        diffusion_resolution=64 if smoke else args.resolution,
        diffusion_steps=20,
        edits=args.edits or (2 if smoke else 5),
        field_preset=args.preset or ("tiny" if smoke else "paper"),
        rays=256 if smoke else args.rays,
        warmup_iters=2 if smoke else 20,
        iters=args.iters or (3 if smoke else 200),
        render_chunks=2 if smoke else 10,
        turn_iters=args.turn_iters,
        edit_rate=args.edit_rate,
        views=args.views,
        preview_long_side=args.preview_size or (64 if smoke else 512),
        previews=args.previews or (1 if smoke else 3),
    )
    return settings, args.json


def main(argv: list[str] | None = None) -> int:
    settings, json_path = parse_settings(argv)
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available; use --smoke for the CPU plumbing check", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    with _offline():
        editor = build_editor(settings)
        edits = time_edits(settings, editor)
        preview = time_preview(settings, editor)
        nerf = time_nerfacto(settings)
        field = time_edit3d_field(settings)
        splat = time_splatfacto(settings)
    turn = project_turn(settings, edits, nerf, field)
    splat_turn = project_splat_turn(settings, edits, splat)
    device = _device_name(settings.device)
    print(report(settings, edits, nerf, field, turn, device, splat, splat_turn, preview))
    if json_path is not None:
        payload = {
            "device": device,
            "settings": dataclasses.asdict(settings),
            "ip2p": edits,
            "preview": preview,
            "nerfacto": nerf,
            "edit3d_field": field,
            "turn": turn,
            "splatfacto": splat,
            "splatfacto_turn": splat_turn,
            "paper_turn_minutes": PAPER_TURN_MINUTES,
        }
        json_path.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
