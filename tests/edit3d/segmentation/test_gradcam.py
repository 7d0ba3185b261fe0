"""Grad-CAM on the tiny BLIP ITM model: shapes, query sensitivity, [ENC], refusals."""

from __future__ import annotations

import numpy as np
import pytest

from edit3d.models.registry import load_model
from edit3d.segmentation.gradcam import BlipGradCam, GradCamConfig, build_itm_text, enc_token_id


@pytest.fixture(scope="module")
def itm():
    return load_model("blip-itm-large-coco", "tiny", seed=0)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.random((40, 56, 3), dtype=np.float32)


def test_token_maps_cover_the_patch_grid_per_token(itm, image):
    gradcam = BlipGradCam(itm.model, itm.processor)
    maps = gradcam.token_maps(image, "a red cube", "blue hair")
    assert gradcam.patch_grid == (6, 6)  # 48 px input in 8 px patches
    assert maps.maps.shape == (len(maps.text.input_ids), 6, 6)
    assert np.all(maps.maps >= 0)  # probabilities times clamped gradients
    assert maps.maps.max() > 0
    assert maps.query_map.shape == (6, 6)


def test_query_span_is_exactly_the_query_tokens(itm):
    tokenizer = itm.processor.tokenizer
    text = build_itm_text(tokenizer, "a person with red hair", "blue shirt", max_tokens=35)
    start, stop = text.query_span
    assert tokenizer.decode(list(text.input_ids[start:stop])) == "blue shirt"
    assert text.input_ids[0] == enc_token_id(tokenizer)
    assert text.input_ids[-1] == tokenizer.sep_token_id
    assert stop == len(text.input_ids) - 1


def test_changing_the_query_changes_the_map(itm, image):
    gradcam = BlipGradCam(itm.model, itm.processor)
    hair = gradcam.patch_map(image, "a red cube", "hair")
    shirt = gradcam.patch_map(image, "a red cube", "green shirt")
    assert not np.allclose(hair, shirt, rtol=1e-3, atol=0)


def test_the_enc_token_replaces_cls_in_the_itm_pass(itm, image):
    seen: list = []

    def spy(_module, _args, kwargs):
        seen.append(kwargs["input_ids"].clone())

    handle = itm.model.text_encoder.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        BlipGradCam(itm.model, itm.processor).token_maps(image, "a cube", "hair")
    finally:
        handle.remove()
    tokenizer = itm.processor.tokenizer
    assert len(seen) == 1
    assert seen[0][0, 0].item() == tokenizer.convert_tokens_to_ids("[ENC]")
    assert tokenizer.cls_token_id not in seen[0][0].tolist()


def test_the_last_text_layer_is_refused(itm):
    with pytest.raises(ValueError, match="last text layer"):
        BlipGradCam(itm.model, itm.processor, GradCamConfig(layer=2))
    with pytest.raises(ValueError, match="layer must be in"):
        BlipGradCam(itm.model, itm.processor, GradCamConfig(layer=5))
    assert BlipGradCam(itm.model, itm.processor).layer == 1  # default for 3 layers


def test_a_query_past_the_token_limit_is_an_error_not_truncated(itm, image):
    gradcam = BlipGradCam(itm.model, itm.processor, GradCamConfig(max_text_tokens=12))
    long_caption = "a person with red hair and a blue shirt on the floor"
    with pytest.raises(ValueError, match="max_text_tokens=12"):
        gradcam.token_maps(image, long_caption, "hat")


def test_a_tokenizer_without_enc_is_refused(itm):
    from transformers import BertTokenizer

    plain = BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])})
    with pytest.raises(ValueError, match=r"\[ENC\]"):
        enc_token_id(plain)


def test_heatmap_is_image_sized_and_normalised(itm, image):
    heatmap = BlipGradCam(itm.model, itm.processor).heatmap(image, "a red cube", "hair")
    assert heatmap.shape == image.shape[:2]
    assert heatmap.dtype == np.float32
    assert heatmap.min() == pytest.approx(0.0, abs=1e-6)
    assert heatmap.max() == pytest.approx(1.0, abs=1e-6)


def test_the_real_loader_reads_a_saved_checkpoint_folder(itm, image, tmp_path):
    itm.model.save_pretrained(tmp_path)
    itm.processor.save_pretrained(tmp_path)
    loaded = load_model("blip-itm-large-coco", "real", local_path=tmp_path)
    assert type(loaded.model) is type(itm.model)
    before = BlipGradCam(itm.model, itm.processor).patch_map(image, "a cube", "hair")
    after = BlipGradCam(loaded.model, loaded.processor).patch_map(image, "a cube", "hair")
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-12)


def test_blip_special_tokens_are_added_in_lavis_order():
    from transformers import BertTokenizer

    from edit3d.models.blip import ensure_blip_special_tokens

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hair"]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})
    ensure_blip_special_tokens(tokenizer, vocab_size=8)
    assert tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [6, 7]
    assert tokenizer.bos_token == "[DEC]"
    with pytest.raises(ValueError, match="embeddings"):
        ensure_blip_special_tokens(tokenizer, vocab_size=7)
