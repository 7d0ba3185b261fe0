"""Reading and writing the images and masks the segmentation commands work on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_image(path: Path) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1] (alpha dropped, greyscale expanded), upright: a phone
    photo's EXIF orientation is applied, as every image viewer shows it."""
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
        return np.asarray(upright.convert("RGB"), dtype=np.float32) / 255.0


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """bool [H, W]: pixels brighter than half; resized (nearest) to `size` = (H, W) if given."""
    with Image.open(path) as image:
        grey = image.convert("L")
        if size is not None and grey.size != (size[1], size[0]):
            grey = grey.resize((size[1], size[0]), Image.Resampling.NEAREST)
        return np.asarray(grey) >= 128


def write_gray(path: Path, values: np.ndarray) -> None:
    """Save a [H, W] map in [0, 1] (bool masks too) as an 8-bit greyscale PNG."""
    array = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    Image.fromarray((array * 255.0).round().astype(np.uint8), mode="L").save(path)


def write_overlay(
    path: Path,
    image: np.ndarray,
    values: np.ndarray,
    colour: tuple[float, float, float] = (1.0, 0.0, 0.0),
) -> None:
    """Save `image` [H, W, 3] with a map [H, W] in [0, 1] laid over it in `colour` (at most
    60 % opaque, so the picture stays readable where the map is 1)."""
    alpha = 0.6 * np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    blended = image * (1.0 - alpha) + np.asarray(colour, dtype=np.float32) * alpha
    Image.fromarray((np.clip(blended, 0.0, 1.0) * 255.0).round().astype(np.uint8)).save(path)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
