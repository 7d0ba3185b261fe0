"""Super-resolution networks for the refine stage (paper Sec. 3.3): Real-ESRGAN and GFPGAN.

The published weights are loaded through `spandrel` (its RRDBNet and GFPGANv1Clean
architecture classes), not through the `realesrgan`/`gfpgan` packages: see
docs/super_resolution.md for why. Only the networks live here; face detection, crop and
paste-back are in `edit3d.refine.faces` and `edit3d.refine.upscale`.

Registered names:

* ``realesrgan-x4plus`` -> `SuperResolver` (RRDBNet, 23 blocks, 64 features, x4)
* ``gfpgan-v1.4`` -> `FaceRestorer` (GFPGANv1Clean, 512 px, channel multiplier 2)

The tiny profile builds the same architectures with small widths (RRDBNet 8 features,
1 block; GFPGANv1Clean at 64 px, narrow 1/16, 32-dim style) from a seed, offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edit3d.models import sources
from edit3d.models.registry import ModelSpec, register

REALESRGAN_X4PLUS = "realesrgan-x4plus"
GFPGAN_V14 = "gfpgan-v1.4"

_REALESRGAN_FILE = sources.REALESRGAN_X4PLUS.filename
_GFPGAN_FILE = sources.GFPGAN_V14.filename


def _as_batch(image: np.ndarray, device: str) -> torch.Tensor:
    """[H, W, 3] float in [0, 1] -> [1, 3, H, W] tensor."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    array = np.ascontiguousarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device)


def _as_image(batch: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] tensor -> [H, W, 3] float32 in [0, 1]."""
    return batch[0].clamp(0.0, 1.0).permute(1, 2, 0).float().cpu().numpy()


@dataclass
class SuperResolver:
    """A x`scale` image upscaler (Real-ESRGAN's RRDBNet), processed in overlapping tiles."""

    network: torch.nn.Module
    """The network; takes [B, 3, H, W] in [0, 1], returns [B, 3, H*scale, W*scale]."""
    scale: int
    """Upscale factor of the network."""
    name: str
    """Which weights: a registered name, with "(tiny)" for the random pipeline-check ones."""
    device: str = "cpu"
    """Torch device the network runs on."""
    tile: int = 256
    """Tile side in input pixels (bounds memory: a 256 px tile needs ~2 GB on a GPU)."""
    tile_pad: int = 10
    """Overlap around each tile, in input pixels, cropped away after the network."""
    pre_pad: int = 10
    """Reflection padding around the whole image (as Real-ESRGAN's inference does), so the
    borders are not upscaled as if the image ended in black."""

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] in [0, 1] -> [H*scale, W*scale, 3] in [0, 1]."""
        batch = _as_batch(image, self.device)
        height, width = batch.shape[-2:]
        pad = max(min(self.pre_pad, height - 1, width - 1), 0)
        if pad:
            batch = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
        with torch.inference_mode():
            out = self._run_tiled(batch)
        s = self.scale
        out = out[:, :, pad * s : pad * s + height * s, pad * s : pad * s + width * s]
        return _as_image(out)

    def _run_tiled(self, batch: torch.Tensor) -> torch.Tensor:
        _, _, height, width = batch.shape
        if self.tile <= 0 or (height <= self.tile and width <= self.tile):
            return self.network(batch)
        s = self.scale
        out = batch.new_zeros((1, 3, height * s, width * s))
        for y0 in range(0, height, self.tile):
            for x0 in range(0, width, self.tile):
                y1, x1 = min(y0 + self.tile, height), min(x0 + self.tile, width)
                py0, px0 = max(y0 - self.tile_pad, 0), max(x0 - self.tile_pad, 0)
                py1 = min(y1 + self.tile_pad, height)
                px1 = min(x1 + self.tile_pad, width)
                tile_out = self.network(batch[:, :, py0:py1, px0:px1])
                oy, ox = (y0 - py0) * s, (x0 - px0) * s
                out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] = tile_out[
                    :, :, oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s
                ]
        return out


@dataclass
class FaceRestorer:
    """GFPGAN: restores an aligned square face crop of `size` px (same size out)."""

    network: torch.nn.Module
    """GFPGANv1Clean; takes and returns [B, 3, size, size] in [-1, 1]."""
    size: int
    """Side of the face crops the network was trained on (512 for the published weights)."""
    name: str
    """Which weights: a registered name, with "(tiny)" for the random pipeline-check ones."""
    device: str = "cpu"
    """Torch device the network runs on."""

    def restore(self, face: np.ndarray) -> np.ndarray:
        """A square face crop [S, S, 3] in [0, 1] (any S) -> restored [S, S, 3] in [0, 1].

        The crop is resized to `size` for the network and back; the network's noise inputs
        are its fixed buffers, so the same crop always restores to the same pixels.
        """
        if face.ndim != 3 or face.shape[0] != face.shape[1] or face.shape[2] != 3:
            raise ValueError(f"face must be a square [S, S, 3] crop, got shape {face.shape}")
        side = face.shape[0]
        batch = _resize(_as_batch(face, self.device), self.size) * 2.0 - 1.0
        with torch.inference_mode():
            restored = self.network(batch, return_rgb=False, randomize_noise=False)[0]
        restored = (restored.clamp(-1.0, 1.0) + 1.0) / 2.0
        return _as_image(_resize(restored, side))


def _resize(batch: torch.Tensor, side: int) -> torch.Tensor:
    if batch.shape[-1] == side and batch.shape[-2] == side:
        return batch
    return F.interpolate(
        batch, size=(side, side), mode="bicubic", align_corners=False, antialias=True
    ).clamp(batch.min().item(), batch.max().item())


# --- real weights ------------------------------------------------------------------------


def _weights_file(path: Path, filename: str) -> Path:
    """The registry hands either the file itself or a folder holding it."""
    path = Path(path)
    return path / filename if path.is_dir() else path


def _load_descriptor(path: Path, device: str, architecture: str) -> object:
    import spandrel  # heavy: only when real weights are requested

    descriptor = spandrel.ModelLoader(device=torch.device(device)).load_from_file(path)
    found = descriptor.architecture.id
    if found != architecture:
        raise ValueError(f"weights {path} hold a {found} network, expected {architecture}")
    descriptor.model.eval()
    return descriptor


def load_realesrgan(path: Path, device: str = "cpu") -> SuperResolver:
    """Real-ESRGAN x4plus from its published .pth (any RRDBNet weights spandrel reads)."""
    descriptor = _load_descriptor(_weights_file(path, _REALESRGAN_FILE), device, "ESRGAN")
    return SuperResolver(
        network=descriptor.model,  # type: ignore[attr-defined]
        scale=int(descriptor.scale),  # type: ignore[attr-defined]
        name=REALESRGAN_X4PLUS,
        device=device,
    )


def load_gfpgan(path: Path, device: str = "cpu") -> FaceRestorer:
    """GFPGAN v1.4 from its published .pth (GFPGANv1Clean, 512 px)."""
    descriptor = _load_descriptor(_weights_file(path, _GFPGAN_FILE), device, "GFPGAN")
    return FaceRestorer(
        network=descriptor.model,  # type: ignore[attr-defined]
        size=512,
        name=GFPGAN_V14,
        device=device,
    )


# --- tiny random builders (pipeline checks only) -------------------------------------------


def build_tiny_realesrgan(seed: int = 0, device: str = "cpu") -> SuperResolver:
    """RRDBNet x4 with 8 features and 1 block, seeded random weights."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    network = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)
    return SuperResolver(
        network=network.eval().to(device),
        scale=4,
        name=f"{REALESRGAN_X4PLUS} (tiny)",
        device=device,
    )


def build_tiny_gfpgan(seed: int = 0, device: str = "cpu") -> FaceRestorer:
    """GFPGANv1Clean at 64 px, channel multiplier 1, narrow 1/16, 32-dim style, 2-layer MLP."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    network = GFPGAN(
        out_size=64,
        num_style_feat=32,
        channel_multiplier=1,
        num_mlp=2,
        narrow=1 / 16,
        sft_half=True,
        different_w=True,
    )
    return FaceRestorer(
        network=network.eval().to(device), size=64, name=f"{GFPGAN_V14} (tiny)", device=device
    )


register(
    ModelSpec(
        name=REALESRGAN_X4PLUS,
        description="Real-ESRGAN x4plus (RRDBNet): x4 super-resolution of non-face regions",
        source=sources.REALESRGAN_X4PLUS,
        load_real=load_realesrgan,
        build_tiny=build_tiny_realesrgan,
    )
)

register(
    ModelSpec(
        name=GFPGAN_V14,
        description="GFPGAN v1.4 (GFPGANv1Clean, 512 px): face restoration",
        source=sources.GFPGAN_V14,
        load_real=load_gfpgan,
        build_tiny=build_tiny_gfpgan,
    )
)
