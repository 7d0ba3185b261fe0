"""BLIP captions decoded as LAVIS: prompt, beams, lengths, prompt stripped."""

from __future__ import annotations

import numpy as np
import pytest

from edit3d.models.registry import load_model
from edit3d.segmentation.caption import BlipCaptioner, CaptionConfig, strip_prompt


def test_captioner_decodes_with_lavis_settings_and_strips_the_prompt():
    bundle = load_model("blip-caption-large", "tiny", seed=0)
    calls: list[dict] = []
    original = bundle.model.generate

    def spy(**kwargs):
        calls.append({**kwargs, "input_ids": kwargs["input_ids"].clone()})
        return original(**kwargs)

    bundle.model.generate = spy
    image = np.random.default_rng(1).random((36, 44, 3), dtype=np.float32)
    caption = BlipCaptioner(bundle.model, bundle.processor)(image)
    (kwargs,) = calls
    assert (kwargs["num_beams"], kwargs["max_length"], kwargs["min_length"]) == (3, 30, 10)
    prompt_ids = kwargs["input_ids"][0].tolist()
    assert bundle.processor.tokenizer.decode(prompt_ids) == "[CLS] a picture of [SEP]"
    assert isinstance(caption, str) and caption
    assert not caption.startswith("a picture of")
    again = BlipCaptioner(bundle.model, bundle.processor)(image)
    assert again == caption  # beam search is deterministic


def test_strip_prompt_removes_only_a_leading_prompt():
    assert (
        strip_prompt("a picture of a woman with red hair", "a picture of ")
        == "a woman with red hair"
    )
    assert strip_prompt("two cats on a sofa", "a picture of ") == "two cats on a sofa"


def test_caption_config_rejects_bad_lengths():
    with pytest.raises(ValueError, match="min_length"):
        CaptionConfig(min_length=40, max_length=30)
    with pytest.raises(ValueError, match="num_beams"):
        CaptionConfig(num_beams=0)
