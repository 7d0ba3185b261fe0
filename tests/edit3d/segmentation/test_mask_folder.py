"""`edit3d edit --masks DIR`: one PNG per view, white = edit, softened like ADSS masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edit3d.segmentation.mask_folder import FolderMaskProvider


def test_masks_are_read_per_view_resized_and_softened(tmp_path: Path) -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).save(tmp_path / "frame_00001.png")
    provider = FolderMaskProvider(tmp_path, edge_sigma_px=32.0)  # ~4 px at 64 px
    assert provider.missing(["images/frame_00001.png", "images/frame_00002.jpg"]) == [
        "images/frame_00002.jpg"
    ]
    soft = provider("images/frame_00001.png", np.zeros((64, 64, 3), np.float32), spec=None)
    assert soft.shape == (64, 64)
    assert soft[32, 32] == pytest.approx(1.0, abs=1e-3) and soft[2, 2] < 1e-3
    edge = soft[32, 10:22]  # across the resized mask's left edge at x = 16
    assert ((edge > 0.05) & (edge < 0.95)).sum() >= 3  # a soft edge, not a step
    with pytest.raises(FileNotFoundError, match="frame_00002"):
        provider("images/frame_00002.jpg", np.zeros((8, 8, 3), np.float32), spec=None)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        FolderMaskProvider(tmp_path / "absent")
