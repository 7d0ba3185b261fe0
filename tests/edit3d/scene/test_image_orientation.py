"""Phone photos store pixels as the sensor read them plus an EXIF orientation tag: every
image the project reads (datasets, `edit3d segment`) is turned upright as viewers show it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edit3d.scene.dataset import load_image
from edit3d.segmentation.image_io import read_image

ROTATE_90_CW = 6
"""EXIF Orientation value: the stored image must be turned 90° clockwise to view it."""


def _sideways_photo(path: Path) -> np.ndarray:
    """Saves a 40x20 (wide) stored image tagged "rotate 90° CW"; returns the upright view."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = (255, 0, 0)  # red band at the stored left edge
    exif = Image.Exif()
    exif[0x0112] = ROTATE_90_CW
    Image.fromarray(stored).save(path, exif=exif.tobytes())  # PNG keeps it exact
    return np.rot90(stored, k=-1)  # what a viewer shows: tall, red band on top


def test_images_are_read_upright(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    upright = _sideways_photo(path).astype(np.float32) / 255.0
    for image in (read_image(path), load_image(path)):
        assert image.shape == (40, 20, 3)
        np.testing.assert_allclose(image, upright, atol=1e-6)
