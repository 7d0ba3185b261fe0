"""FFHQ alignment: a rotated, scaled face-like image lands on the template; paste-back
puts the restored crop where the face was."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from edit3d.refine.face_align import (
    FFHQ_TEMPLATE_512,
    align_face,
    paste_face,
    similarity_transform,
    template,
)


def _rotated_scaled(points: np.ndarray, degrees: float, scale: float, shift) -> np.ndarray:
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (points - 256.0) @ (scale * rotation).T + np.asarray(shift)


def _face_like(shape: tuple[int, int], landmarks: np.ndarray, sigma: float) -> np.ndarray:
    """A grey oval with five dark Gaussian spots (eyes, nose, mouth corners) at `landmarks`."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)  # pixel centres at integers
    image = np.full((height, width), 0.8)
    for x, y in landmarks:
        image -= 0.7 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=2).astype(np.float32)


def _spot_centres(image: np.ndarray, count: int = 5) -> np.ndarray:
    """Centroids of the `count` darkest connected spots, ordered like the template."""
    darkness = 0.8 - image[..., 0]
    labels, found = ndimage.label(darkness > 0.35)
    assert found == count, found
    centres = ndimage.center_of_mass(darkness, labels, range(1, count + 1))
    xy = np.array([(x, y) for y, x in centres])
    order = [int(np.argmin(((xy - t) ** 2).sum(1))) for t in template(image.shape[0])]
    return xy[order]


@pytest.mark.parametrize(("degrees", "scale"), [(0.0, 0.25), (28.0, 0.35), (-40.0, 0.18)])
def test_aligned_landmarks_land_on_the_template(degrees: float, scale: float) -> None:
    landmarks = _rotated_scaled(FFHQ_TEMPLATE_512, degrees, scale, shift=(150.0, 110.0))
    image = _face_like((240, 300), landmarks, sigma=2.5 * scale / 0.25)
    crop, affine = align_face(image, landmarks, 512)
    assert crop.shape == (512, 512, 3)
    assert np.abs(_spot_centres(crop) - FFHQ_TEMPLATE_512).max() < 2.0
    # The transform is a similarity: equal singular values, no mirror.
    singular = np.linalg.svd(affine[:, :2], compute_uv=False)
    assert singular[0] == pytest.approx(singular[1]) and np.linalg.det(affine[:, :2]) > 0


def test_similarity_fit_recovers_a_known_transform() -> None:
    source = np.random.default_rng(0).random((5, 2)) * 100
    expected = _rotated_scaled(source + 256.0, 33.0, 1.7, shift=(10.0, -4.0))
    fitted = similarity_transform(source, expected)
    assert np.allclose(source @ fitted[:, :2].T + fitted[:, 2], expected)


def test_paste_back_returns_the_face_to_where_it_was() -> None:
    scale = 2
    landmarks = _rotated_scaled(FFHQ_TEMPLATE_512, 20.0, 0.2, shift=(170.0, 150.0))
    image = _face_like((300, 340), landmarks, sigma=3.0)
    crop, affine = align_face(image, landmarks, 128)
    upscaled = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    restored = np.full_like(crop, 0.1)  # a "restorer" that paints the crop dark
    out = upscaled.copy()
    weight = paste_face(out, restored, affine, scale)
    face = tuple(int(v) for v in np.round(landmarks[2] * scale))  # nose tip, output pixels
    assert weight[face[1], face[0]] == pytest.approx(1.0)
    assert out[face[1], face[0]] == pytest.approx(0.1, abs=1e-4)
    untouched = weight == 0
    assert untouched.mean() > 0.5
    assert np.array_equal(out[untouched], upscaled[untouched])
    # The weight's support is the warped crop: its area is the crop's, in output pixels.
    crop_side_out = 128 / np.sqrt(abs(np.linalg.det(affine[:, :2]))) * scale
    assert (weight > 0).sum() == pytest.approx(crop_side_out**2, rel=0.05)


class _DarkRestorer:
    """Stands in for GFPGAN: paints the aligned crop dark, remembering what it was given."""

    size = 64

    def __init__(self) -> None:
        self.crops: list[np.ndarray] = []

    def restore(self, face: np.ndarray) -> np.ndarray:
        self.crops.append(face)
        return np.full_like(face, 0.05)


def test_upscale_restores_faces_with_landmarks_through_aligned_crops() -> None:
    from edit3d.models.registry import load_model
    from edit3d.refine.faces import FaceBox, FixedFaceDetector
    from edit3d.refine.upscale import upscale_view_with_faces

    esrgan = load_model("realesrgan-x4plus", "tiny", seed=0)
    landmarks = _rotated_scaled(FFHQ_TEMPLATE_512, -15.0, 0.08, shift=(40.0, 36.0))
    image = _face_like((72, 96), landmarks, sigma=1.0)
    box = FaceBox(28.0, 24.0, 52.0, 52.0, landmarks=tuple(map(tuple, landmarks)))
    restorer = _DarkRestorer()
    out, pastes = upscale_view_with_faces(image, esrgan, restorer, FixedFaceDetector([box]))
    background = esrgan.upscale(image)
    assert restorer.crops[0].shape == (64, 64, 3)
    # The restorer saw an aligned face: its spots sit on the 64 px template.
    assert np.abs(_spot_centres(restorer.crops[0]) - template(64)).max() < 2.0
    nose = np.round(landmarks[2] * esrgan.scale).astype(int)
    assert out[nose[1], nose[0]] == pytest.approx(0.05, abs=1e-4)
    assert np.array_equal(out[:20], background[:20])  # far from the face: Real-ESRGAN only
    assert pastes[0].mask.shape == (pastes[0].crop[2] * 4,) * 2 and pastes[0].mask.max() == 1.0
