"""The PyTorch splat rasterizer against a per-pixel loop written from gsplat's kernel rules."""

from __future__ import annotations

import pytest
import torch

from edit3d.field.splat_raster import rasterize


def _gaussians(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([1.6, 1.6, 1.0]) - torch.tensor(
        [0.8, 0.8, -2.0]
    )  # in front of a camera at the origin looking down +z (OpenCV axes)
    return {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.rand(n, 3, generator=g) * 0.15 + 0.02,
        "opacities": torch.rand(n, generator=g) * 0.9 + 0.05,
        "colors": torch.rand(n, 3, generator=g),
    }


def _camera(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    K = torch.tensor([[[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1.0]]])
    return torch.eye(4)[None], K


def _loop_reference(info: dict, colors: torch.Tensor, opacities: torch.Tensor, size: int):
    """Each pixel walks the Gaussians front to back as gsplat's CUDA kernel does."""
    means2d, conics, depths, radii = info["means2d"][0], info["conics"][0], info["depths"][0], info[
        "radii"
    ][0]
    order = [int(i) for i in torch.argsort(depths) if radii[i] > 0]
    image = torch.zeros(size, size, 3)
    alpha_out = torch.zeros(size, size)
    for y in range(size):
        for x in range(size):
            transmittance = torch.tensor(1.0)
            colour = torch.zeros(3)
            for i in order:
                dx, dy = x + 0.5 - means2d[i, 0], y + 0.5 - means2d[i, 1]
                a, b, c = conics[i]
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                if sigma < 0:
                    continue
                alpha = torch.clamp_max(opacities[i] * torch.exp(-sigma), 0.999)
                if alpha < 1 / 255:
                    continue
                after = transmittance * (1 - alpha)
                if after <= 1e-4:
                    break
                colour = colour + alpha * transmittance * colors[i]
                transmittance = after
            image[y, x] = colour
            alpha_out[y, x] = 1 - transmittance
    return image, alpha_out


def test_torch_compositor_follows_the_kernel_rules() -> None:
    size = 12
    g = _gaussians(40, seed=3)
    viewmat, K = _camera(size)
    render, alpha, info = rasterize(
        g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], viewmat, K, size, size,
        sh_degree=None, with_depth=False, absgrad=False, rasterizer="torch", tile=5,
    )  # fmt: skip
    expected_rgb, expected_alpha = _loop_reference(info, g["colors"], g["opacities"], size)
    assert render.shape == (1, size, size, 3) and alpha.shape == (1, size, size, 1)
    assert expected_alpha.max() > 0.9  # the scene covers pixels fully somewhere
    torch.testing.assert_close(render[0], expected_rgb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alpha[0, ..., 0], expected_alpha, atol=1e-5, rtol=1e-5)


def test_absgrad_is_the_sum_of_per_pixel_absolute_gradients() -> None:
    size = 8
    g = _gaussians(15, seed=5)
    g["means"].requires_grad_(True)
    viewmat, K = _camera(size)
    target = torch.rand(size, size, 3, generator=torch.Generator().manual_seed(1))

    def render_loss(absgrad: bool) -> tuple[torch.Tensor, dict]:
        render, _, info = rasterize(
            g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], viewmat, K,
            size, size, sh_degree=None, with_depth=False, absgrad=absgrad,
            rasterizer="torch", tile=3,
        )  # fmt: skip
        info["means2d"].retain_grad()
        return (render[0] - target).abs(), info

    per_pixel, info = render_loss(absgrad=True)
    per_pixel.sum().backward()
    expected = torch.zeros_like(info["means2d"])
    for y in range(size):
        for x in range(size):
            pixel, pixel_info = render_loss(absgrad=False)
            pixel[y, x].sum().backward()
            expected += pixel_info["means2d"].grad.abs()
    assert expected.abs().sum() > 0
    torch.testing.assert_close(info["means2d"].absgrad, expected, atol=1e-6, rtol=1e-4)
    # the plain gradient is the signed sum, which the absolute one bounds
    assert torch.all(info["means2d"].grad.abs() <= info["means2d"].absgrad + 1e-6)


def test_expected_depth_and_unknown_rasterizer() -> None:
    size = 10
    g = _gaussians(30, seed=9)
    viewmat, K = _camera(size)
    render, alpha, info = rasterize(
        g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], viewmat, K, size, size,
        sh_degree=None, with_depth=True, absgrad=False, rasterizer="torch",
    )  # fmt: skip
    depth = render[0, ..., 3][alpha[0, ..., 0] > 0.5]
    z = info["depths"][0][info["radii"][0] > 0]
    assert depth.numel() > 0 and z.min() - 1e-4 <= depth.min() and depth.max() <= z.max() + 1e-4
    with pytest.raises(ValueError, match="rasterizer"):
        rasterize(
            g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], viewmat, K, 4, 4,
            sh_degree=None, with_depth=False, absgrad=False, rasterizer="opengl",  # type: ignore[arg-type]
        )  # fmt: skip
