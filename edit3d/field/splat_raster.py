"""Rasterizing Gaussian splats for one camera: gsplat's CUDA kernels, or plain PyTorch.

`rasterize` returns what splatfacto's densification strategy (gsplat's `DefaultStrategy`)
reads from gsplat's `rasterization`: the image, its alpha, and an info dict with the
projected 2D means (in the graph, so their gradient can be kept), radii and image size.

"cuda" calls `gsplat.rasterization` (compiled kernels, a CUDA device). "torch" is the CPU
and test path: gsplat's own PyTorch reference for projection and spherical harmonics
(`gsplat/cuda/_torch_impl.py`), and a dense alpha compositor written here, because gsplat's
reference compositor calls CUDA for its tile intersections. It follows the CUDA kernel's
rules exactly (Gaussians in depth order; skip sigma < 0 and alpha < 1/255; alpha capped at
0.999; a pixel stops before the Gaussian that would take its transmittance to ≤ 1e-4) and
also yields splatfacto's `absgrad` (the per-pixel absolute gradients of each 2D mean,
summed), which the CUDA kernel computes in its backward pass: the 2D means are gathered per
pixel and a gradient hook sums the absolute values of those per-pixel gradients.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

Rasterizer = Literal["cuda", "torch"]

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4


def rasterize(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4] (w, x, y, z), normalised here
    scales: torch.Tensor,  # [N, 3] activated
    opacities: torch.Tensor,  # [N] activated
    colors: torch.Tensor,  # [N, K, 3] SH coefficients, or [N, 3] colours if sh_degree is None
    viewmat: torch.Tensor,  # [1, 4, 4] world → camera (OpenCV axes)
    K: torch.Tensor,  # [1, 3, 3]
    width: int,
    height: int,
    *,
    sh_degree: int | None,
    with_depth: bool,
    absgrad: bool,
    rasterizer: Rasterizer,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    tile: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(render [1, H, W, 3 (+1 expected z-depth)], alpha [1, H, W, 1], info)."""
    if rasterizer == "cuda":
        from gsplat.rendering import rasterization

        return rasterization(
            means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
            viewmats=viewmat, Ks=K, width=width, height=height, packed=False,
            near_plane=0.01, far_plane=1e10, render_mode="RGB+ED" if with_depth else "RGB",
            sh_degree=sh_degree, sparse_grad=False, absgrad=absgrad,
            rasterize_mode=rasterize_mode,
        )  # fmt: skip
    if rasterizer != "torch":
        raise ValueError(f"rasterizer must be 'cuda' or 'torch', got {rasterizer!r}")
    return _rasterize_torch(
        means, quats, scales, opacities, colors, viewmat, K, width, height,
        sh_degree=sh_degree, with_depth=with_depth, absgrad=absgrad,
        antialiased=rasterize_mode == "antialiased", tile=tile,
    )  # fmt: skip


def _rasterize_torch(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int | None,
    with_depth: bool,
    absgrad: bool,
    antialiased: bool,
    tile: int,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    from gsplat.cuda._torch_impl import (
        _fully_fused_projection,
        _quat_scale_to_covar_preci,
        _spherical_harmonics,
    )

    covars, _ = _quat_scale_to_covar_preci(quats, scales, True, False, triu=False)
    radii, means2d, depths, conics, compensations = _fully_fused_projection(
        means, covars, viewmat, K, width, height, calc_compensations=antialiased
    )  # [1, N], [1, N, 2], [1, N], [1, N, 3]
    alphas = opacities[None] if compensations is None else opacities[None] * compensations
    if sh_degree is not None:
        camera_centre = torch.linalg.inv(viewmat)[0, :3, 3]
        rgb = _spherical_harmonics(sh_degree, means - camera_centre, colors)
        rgb = torch.clamp_min(rgb + 0.5, 0.0)  # as gsplat's rasterization does
    else:
        rgb = colors
    features = torch.cat([rgb, depths[0, :, None]], dim=-1) if with_depth else rgb
    info: dict[str, Any] = {
        "radii": radii, "means2d": means2d, "depths": depths, "conics": conics,
        "width": width, "height": height, "n_cameras": 1, "gaussian_ids": None,
        "camera_ids": None,
    }  # fmt: skip
    if absgrad and means2d.requires_grad:
        means2d.absgrad = torch.zeros_like(means2d)  # type: ignore[attr-defined]
    render, alpha = _composite(
        means2d, conics[0], alphas[0], features, radii[0], depths[0], width, height,
        absgrad=absgrad, tile=tile,
    )  # fmt: skip
    if with_depth:
        expected = render[..., -1:] / alpha.clamp(min=1e-10)
        render = torch.cat([render[..., :-1], expected], dim=-1)
    return render[None], alpha[None], info


def _composite(
    means2d: torch.Tensor,  # [1, N, 2]
    conics: torch.Tensor,  # [N, 3]
    alphas: torch.Tensor,  # [N]
    features: torch.Tensor,  # [N, D]
    radii: torch.Tensor,  # [N]
    depths: torch.Tensor,  # [N]
    width: int,
    height: int,
    *,
    absgrad: bool,
    tile: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back alpha compositing of the visible Gaussians, one square tile of pixels
    at a time against the Gaussians whose 3-sigma box reaches it (gsplat's tiling, so the
    work per tile stays small); (features [H, W, D], alpha [H, W, 1])."""
    device, dtype = means2d.device, means2d.dtype
    visible = torch.nonzero(radii > 0).squeeze(-1)
    order = visible[torch.argsort(depths[visible])]
    centres = means2d[0, order].detach()
    reach = radii[order].to(dtype)
    index_y, index_x, tile_rgb, tile_alpha = [], [], [], []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(height, top + tile), min(width, left + tile)
            near = (centres[:, 1] + reach > top) & (centres[:, 1] - reach < bottom)
            near &= (centres[:, 0] + reach > left) & (centres[:, 0] - reach < right)
            ys, xs = _tile_index(top, bottom, left, right, device)
            pixels = torch.stack([xs, ys], dim=-1).to(dtype) + 0.5  # [P, 2] pixel centres
            ids = order[near]
            rgb, alpha = _composite_band(
                pixels, means2d, ids, conics[ids], alphas[ids], features[ids], absgrad
            )
            index_y.append(ys)
            index_x.append(xs)
            tile_rgb.append(rgb)
            tile_alpha.append(alpha)
    where = (torch.cat(index_y), torch.cat(index_x))
    out = torch.zeros(height, width, features.shape[-1], device=device, dtype=dtype)
    alpha_out = torch.zeros(height, width, device=device, dtype=dtype)
    out = out.index_put(where, torch.cat(tile_rgb))
    alpha_out = alpha_out.index_put(where, torch.cat(tile_alpha))
    return out, alpha_out[..., None]


def _tile_index(
    top: int, bottom: int, left: int, right: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(
        torch.arange(top, bottom, device=device),
        torch.arange(left, right, device=device),
        indexing="ij",
    )
    return ys.reshape(-1), xs.reshape(-1)


def _composite_band(
    pixels: torch.Tensor,  # [P, 2] pixel centres (x, y)
    means2d: torch.Tensor,  # [1, N, 2] all projected means (the tensor the strategy reads)
    ids: torch.Tensor,  # [M] Gaussians that may touch these pixels, front to back
    conics: torch.Tensor,  # [M, 3]
    alphas: torch.Tensor,  # [M]
    features: torch.Tensor,  # [M, D]
    absgrad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [P, D], alpha [P]) of one band of pixels."""
    if len(ids) == 0:
        return pixels.new_zeros(len(pixels), features.shape[-1]), pixels.new_zeros(len(pixels))
    per_pixel = means2d[0, ids].expand(len(pixels), -1, -1)  # [P, M, 2]
    if absgrad and per_pixel.requires_grad:
        per_pixel.register_hook(_absgrad_adder(means2d.absgrad, ids))  # type: ignore[attr-defined]
    delta = pixels[:, None, :] - per_pixel
    sigma = 0.5 * (conics[:, 0] * delta[..., 0] ** 2 + conics[:, 2] * delta[..., 1] ** 2) + (
        conics[:, 1] * delta[..., 0] * delta[..., 1]
    )  # [P, M]
    alpha = torch.clamp_max(alphas * torch.exp(-sigma), ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    through = torch.cumprod(1.0 - alpha, dim=1)  # transmittance after each Gaussian
    before = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1)
    # Transmittance only falls, so "stop before the Gaussian taking it to ≤ 1e-4" is a mask.
    weights = alpha * before * (through > TRANSMITTANCE_MIN)
    return weights @ features, weights.sum(dim=1)


def _absgrad_adder(total: torch.Tensor, ids: torch.Tensor) -> Any:
    """A gradient hook adding |per-pixel gradient| of the gathered means into `total`."""

    def add(grad: torch.Tensor) -> None:  # grad: [P, M, 2]
        total[0].index_add_(0, ids, grad.abs().sum(dim=0))

    return add
