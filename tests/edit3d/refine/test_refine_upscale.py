"""Tiny Real-ESRGAN/GFPGAN networks and the mixed face/non-face upscale of one view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edit3d.models.sr import build_tiny_gfpgan, build_tiny_realesrgan, load_realesrgan
from edit3d.refine.faces import FaceBox, FixedFaceDetector, YuNetFaceDetector
from edit3d.refine.upscale import face_paste_mask, square_crop, upscale_view_with_faces


@pytest.fixture(scope="module")
def esrgan():
    return build_tiny_realesrgan(seed=0)


@pytest.fixture(scope="module")
def gfpgan():
    return build_tiny_gfpgan(seed=0)


def _view(height: int = 24, width: int = 32) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(size=(height, width, 3)).astype(np.float32)


def test_tiny_esrgan_upscales_by_four_and_is_seeded(esrgan):
    image = _view(12, 20)
    out = esrgan.upscale(image)
    assert out.shape == (48, 80, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(build_tiny_realesrgan(seed=0).upscale(image), out)
    assert not np.array_equal(build_tiny_realesrgan(seed=1).upscale(image), out)


def test_tiled_upscale_matches_whole_image(esrgan):
    image = _view(30, 41)
    whole = esrgan.upscale(image)
    tiled = type(esrgan)(esrgan.network, esrgan.scale, esrgan.name, tile=16, tile_pad=10)
    np.testing.assert_allclose(tiled.upscale(image), whole, atol=1e-5)


def test_tiny_gfpgan_restores_square_crops_deterministically(gfpgan):
    face = _view(40, 40)
    out = gfpgan.restore(face)
    assert out.shape == (40, 40, 3)
    np.testing.assert_array_equal(gfpgan.restore(face), out)
    assert np.abs(out - face).mean() > 0.01  # the network changed the pixels
    with pytest.raises(ValueError, match="face"):
        gfpgan.restore(_view(40, 30))


def test_realesrgan_weights_load_from_a_pth_file_through_spandrel(tmp_path, esrgan):
    path = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save(esrgan.network.state_dict(), path)
    loaded = load_realesrgan(path)
    assert loaded.scale == 4
    image = _view(8, 8)
    np.testing.assert_allclose(loaded.upscale(image), esrgan.upscale(image), atol=1e-6)


def test_face_region_comes_from_gfpgan_rest_from_esrgan_with_feathered_seam(esrgan, gfpgan):
    image = _view(24, 32)
    box = FaceBox(12.0, 6.0, 20.0, 14.0)  # 8x8 face; crop 16x16 at (8, 2)
    out, pastes = upscale_view_with_faces(image, esrgan, gfpgan, FixedFaceDetector([box]))
    background = esrgan.upscale(image)
    assert out.shape == (96, 128, 3)
    x0, y0, side = pastes[0].crop
    assert (x0, y0, side) == (8, 2, 16)

    crop = image[y0 : y0 + side, x0 : x0 + side]
    restored = gfpgan.restore(crop)
    import cv2

    restored_big = np.clip(cv2.resize(restored, (64, 64), interpolation=cv2.INTER_CUBIC), 0, 1)
    # inside the face box (x 48..80, y 24..56 in output pixels): GFPGAN's pixels exactly
    np.testing.assert_allclose(out[24:56, 48:80], restored_big[16:48, 16:48], atol=1e-6)
    # outside the crop (x 32..96, y 8..72): Real-ESRGAN's pixels exactly
    outside = np.ones(out.shape[:2], bool)
    outside[8:72, 32:96] = False
    np.testing.assert_array_equal(out[outside], background[outside])
    # the margin is a convex blend whose weight rises monotonically towards the face
    mask = pastes[0].mask
    row = mask[32]
    assert row[0] < 0.05 and row[15] < 1.0 and np.all(row[16:48] == 1.0)
    assert np.all(np.diff(row[:16]) >= 0) and np.all(np.diff(row[48:]) <= 0)
    blend = (
        background[8 + 32, 32:48] * (1 - row[:16, None]) + restored_big[32, :16] * row[:16, None]
    )
    np.testing.assert_allclose(out[40, 32:48], blend, atol=1e-6)


def test_face_crop_past_the_image_border_is_padded_and_clipped(esrgan, gfpgan):
    image = _view(24, 32)
    box = FaceBox(0.0, 0.0, 6.0, 6.0)
    out, pastes = upscale_view_with_faces(image, esrgan, gfpgan, FixedFaceDetector([box]))
    assert pastes[0].crop[0] < 0 and out.shape == (96, 128, 3)
    assert np.all(np.isfinite(out))


def test_no_detector_means_pure_esrgan(esrgan, gfpgan):
    image = _view()
    out, pastes = upscale_view_with_faces(image, esrgan, gfpgan, None)
    assert pastes == []
    np.testing.assert_array_equal(out, esrgan.upscale(image))


def test_paste_mask_is_one_in_box_zero_at_border():
    box = FaceBox(10.0, 10.0, 20.0, 30.0)
    crop = square_crop(box, 2.0)
    assert crop == (-5, 0, 40)
    mask = face_paste_mask(box, crop, 2)
    assert mask.shape == (80, 80)
    assert np.all(mask[20:60, 30:50] == 1.0)
    assert mask[0, 40] < 0.01 and mask[40, 0] < 0.01 and mask[79, 79] < 0.01


class _YuNetRows:
    """Stands in for cv2.FaceDetectorYN (no .onnx here): records the input, returns rows."""

    def __init__(self, rows):
        self.rows, self.sizes, self.images = rows, [], []

    def setInputSize(self, size):  # OpenCV's name
        self.sizes.append(size)

    def detect(self, image):
        self.images.append(image)
        return 1, self.rows


def test_yunet_rows_become_boxes_with_landmarks_in_image_pixels():
    row = np.array([100, 50, 80, 100, 120, 90, 160, 90, 140, 110, 125, 130, 155, 130, 0.9])
    detector = YuNetFaceDetector.__new__(YuNetFaceDetector)
    detector._network = _YuNetRows(row[None].astype(np.float32))
    image = np.zeros((960, 1280, 3), np.float32)
    image[..., 0] = 1.0  # red in RGB
    (face,) = detector.detect(image)
    # The network saw a BGR view reduced to 640 px; results come back in input pixels.
    assert detector._network.sizes == [(640, 480)]
    assert detector._network.images[0][0, 0].tolist() == [0, 0, 255]
    assert (face.x0, face.y0, face.x1, face.y1) == pytest.approx((200, 100, 360, 300))
    expected = [(240, 180), (320, 180), (280, 220), (250, 260), (310, 260)]
    np.testing.assert_allclose(face.landmarks, expected, rtol=1e-5)
    assert face.score == pytest.approx(0.9)
    detector._network = _YuNetRows(None)
    assert detector.detect(image[:100, :100]) == []


def test_registry_builds_the_tiny_twins_offline():
    from edit3d.models.registry import load_model
    from edit3d.models.sr import FaceRestorer, SuperResolver

    esr = load_model("realesrgan-x4plus", "tiny", seed=0)
    face = load_model("gfpgan-v1.4", "tiny", seed=0)
    assert isinstance(esr, SuperResolver) and esr.scale == 4 and esr.name.endswith("(tiny)")
    assert isinstance(face, FaceRestorer) and face.size == 64


@pytest.mark.slow
def test_full_size_gfpgan_checkpoint_loads_through_spandrel(tmp_path):
    """A random GFPGANv1Clean of the published size, saved as the release files are
    ({"params_ema": ...}), loads with `load_gfpgan` and restores 512 px crops."""
    from spandrel.architectures.GFPGAN import GFPGAN

    from edit3d.models.sr import load_gfpgan

    torch.manual_seed(0)
    network = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, sft_half=True)
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": network.state_dict()}, path)
    restorer = load_gfpgan(path)
    assert restorer.size == 512
    face = _view(64, 64)
    out = restorer.restore(face)
    assert out.shape == (64, 64, 3) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(restorer.restore(face), out)
