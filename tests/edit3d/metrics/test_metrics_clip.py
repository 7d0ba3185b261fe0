"""CLIP directional similarity: the formula on constructed embeddings, then the tiny CLIP."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from edit3d.metrics.clip_score import (
    clip_directional_similarity,
    clip_text_image_similarity,
    directional_similarities,
)
from edit3d.models.clip import build_tiny_clip


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_parallel_directions_score_one_and_opposite_minus_one():
    # text embeddings live in other coordinates than the images, but their change between
    # captions is the images' change rotated into place: parallel directions
    image_before, image_after = _unit([1.0, 0.0, 0.0, 0.0]), _unit([0.6, 0.8, 0.0, 0.0])
    rotate = np.array([[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]], dtype=float)
    text_before = rotate @ image_before
    text_after = rotate @ image_after
    before, after = image_before[None], image_after[None]
    # rotate maps the image plane onto another plane: the directions are orthogonal...
    assert directional_similarities(before, after, text_before, text_after) == pytest.approx([0])
    # ...unless the captions move the same way in the same coordinates
    assert directional_similarities(before, after, image_before, image_after) == pytest.approx([1])
    assert directional_similarities(before, after, image_after, image_before) == pytest.approx([-1])
    shifted = _unit([0.3, 0.1, 0.5, 0.2])  # a common offset does not change the direction
    text_b, text_a = _unit(shifted + 0.01 * image_before), _unit(shifted + 0.01 * image_after)
    score = directional_similarities(before, after, text_b, text_a)[0]
    assert 0.95 < score <= 1.0


def test_orthogonal_change_scores_zero_and_scale_does_not_matter():
    before, after = np.array([[1.0, 0.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0, 0.0]])
    text_before, text_after = np.array([0.0, 0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0])
    assert directional_similarities(before, after, text_before, text_after) == pytest.approx([0.0])
    # unnormalised inputs are normalised first: scaling an embedding changes nothing
    scaled = directional_similarities(before * 5.0, after * 0.1, before[0] * 3, after[0] * 7)
    assert scaled == pytest.approx([1.0])


def test_mean_over_views_and_shape_check():
    before = np.eye(4)[:2]
    after = np.eye(4)[[1, 0]]
    scores = directional_similarities(before, after, np.eye(4)[0], np.eye(4)[1])
    assert scores == pytest.approx([1.0, -1.0])
    with pytest.raises(ValueError, match="image_after"):
        directional_similarities(before, after[:1], np.eye(4)[0], np.eye(4)[1])


class _ToyClip:
    """Embeds an image as its mean colour and a caption by colour words (exact geometry)."""

    name = "toy"
    _words: ClassVar[dict[str, list[float]]] = {
        "red": [1.0, 0.0, 0.0],
        "green": [0.0, 1.0, 0.0],
        "blue": [0.0, 0.0, 1.0],
    }

    def image_features(self, images):
        return np.stack([im.reshape(-1, 3).mean(0) for im in images])

    def text_features(self, texts):
        return np.stack([np.sum([self._words[w] for w in t.split()], axis=0) for t in texts])


def test_directional_similarity_through_the_encoder_interface():
    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0] = 1
    green = np.zeros((4, 4, 3), np.float32)
    green[..., 1] = 1
    toy = _ToyClip()
    assert clip_directional_similarity([red], [green], "red", "green", toy) == pytest.approx(1.0)
    assert clip_directional_similarity([red], [green], "green", "red", toy) == pytest.approx(-1.0)
    assert clip_text_image_similarity([red, green], "red", toy) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="images_before"):
        clip_directional_similarity([red], [], "red", "green", toy)


def test_tiny_clip_end_to_end_is_a_bounded_deterministic_figure():
    clip = build_tiny_clip(seed=0)
    assert clip.name == "clip-vit-l14 (tiny)"
    rng = np.random.default_rng(0)
    before = [rng.uniform(size=(40, 48, 3)).astype(np.float32) for _ in range(3)]
    after = [np.clip(im + 0.3, 0, 1) for im in before]
    score = clip_directional_similarity(before, after, "a photo", "a bright photo", clip)
    assert -1.0 <= score <= 1.0 and score != 0.0
    again = clip_directional_similarity(before, after, "a photo", "a bright photo", clip)
    assert again == pytest.approx(score, abs=1e-6)
    swapped = clip_directional_similarity(before, after, "a bright photo", "a photo", clip)
    assert swapped == pytest.approx(-score, abs=1e-5)
    features = clip.image_features(before)
    assert features.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def test_tiny_tokenizer_encodes_distinct_texts_differently():
    clip = build_tiny_clip(seed=0)
    ids = clip.tokenizer(["a cat", "a dog"])["input_ids"]
    assert ids[0] != ids[1]
    assert ids[0][0] == clip.tokenizer.bos_token_id and ids[0][-1] == clip.tokenizer.eos_token_id
    text = clip.text_features(["a cat", "a dog"])
    assert float(text[0] @ text[1]) < 0.9999


def test_registry_names_the_tiny_clip_after_the_model_it_stands_in_for():
    from edit3d.models.registry import load_model

    assert load_model("clip-vit-b32", "tiny").name == "clip-vit-b32 (tiny)"
