"""AdssSegmenter end to end: injected components (exact) and tiny SAM + tiny BLIP."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edit3d.segmentation.adss import AdssConfig, AdssSegmenter
from edit3d.segmentation.matching import combine_edit_mask
from edit3d.segmentation.soft_mask import edge_sigma_for, soften_mask

H, W = 32, 48


def box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


OBJECTS = {"a": box(2, 2, 14, 14), "b": box(16, 20, 30, 40), "c": box(2, 30, 12, 46)}
CENTRES = {"a": (8, 8), "b": (23, 30), "c": (7, 38)}


class FakeAttention:
    """Heatmap peaked at the centre of the object the query names; flat for unknown queries."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, image: np.ndarray, caption: str, query: str) -> np.ndarray:
        self.calls.append((caption, query))
        if query not in CENTRES:
            return np.zeros(image.shape[:2], dtype=np.float32)
        rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        r, c = CENTRES[query]
        return np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 32.0).astype(np.float32)


class FakeCaptioner:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: np.ndarray) -> str:
        self.calls += 1
        return "three boxes"


@dataclass
class Spec:
    edit_queries: tuple[str, ...] = ()
    keep_queries: tuple[str, ...] = ()
    caption: str | None = None


@pytest.fixture
def parts():
    return FakeCaptioner(), FakeAttention()


@pytest.fixture
def segmenter(parts) -> AdssSegmenter:
    captioner, attention = parts
    return AdssSegmenter(
        "real",
        config=AdssConfig(edge_sigma_px=16.0),
        captioner=captioner,
        attention=attention,
        proposer=lambda image: list(OBJECTS.values()),
    )


IMAGE = np.full((H, W, 3), 0.5, dtype=np.float32)


def test_preview_selects_the_named_object_and_softens_its_edges(segmenter):
    preview = segmenter.preview(IMAGE, ["b"])
    assert preview.matches["b"].index == 1
    assert np.array_equal(preview.edit_mask, OBJECTS["b"])
    sigma = edge_sigma_for(H, W, 16.0)
    assert np.array_equal(preview.soft_mask, soften_mask(OBJECTS["b"], sigma))
    assert preview.heatmaps["b"].shape == (H, W)
    assert preview.num_proposals == 3


def test_inverse_mode_edits_everything_but_the_kept_object(segmenter):
    preview = segmenter.preview(IMAGE, keep_queries=["b"])
    assert np.array_equal(preview.edit_mask, ~OBJECTS["b"])
    assert preview.keep_queries == ("b",)


def test_edit_queries_unite_and_keep_queries_subtract(segmenter):
    assert np.array_equal(
        segmenter.preview(IMAGE, ["a", "c"]).edit_mask, OBJECTS["a"] | OBJECTS["c"]
    )
    with pytest.raises(ValueError, match="both edited and kept"):
        segmenter.preview(IMAGE, ["a"], ["a"])


def test_an_unmatched_query_falls_back_and_warns(segmenter):
    preview = segmenter.preview(IMAGE, ["b", "unicorn"])
    assert preview.matches["unicorn"].fallback
    assert any("unicorn" in w for w in preview.warnings)
    assert np.array_equal(preview.edit_mask, OBJECTS["b"])  # an empty fallback adds nothing


def test_caption_is_generated_overridden_or_left_out(segmenter, parts):
    captioner, attention = parts
    assert segmenter.preview(IMAGE, ["a"]).caption == "three boxes"
    assert captioner.calls == 1 and attention.calls[-1] == ("three boxes", "a")
    assert segmenter.preview(IMAGE, ["a"], caption="a red box").caption == "a red box"
    assert segmenter.preview(IMAGE, ["a"], caption="").caption == ""
    assert captioner.calls == 1 and attention.calls[-1] == ("", "a")


def test_mask_provider_reads_the_turn_spec(segmenter):
    provider = segmenter.mask_provider()
    soft = provider("frame_001.png", IMAGE, Spec(keep_queries=("b",), caption="boxes"))
    preview = provider.last_preview
    assert np.array_equal(preview.edit_mask, ~OBJECTS["b"])
    assert np.array_equal(soft, preview.soft_mask)
    assert provider.summaries["frame_001.png"]["caption"] == "boxes"
    assert provider.summaries["frame_001.png"]["queries"]["b"]["role"] == "keep"
    everything = provider("frame_002.png", IMAGE, Spec())
    assert everything.dtype == np.float32 and np.all(everything == 1.0)


def test_bad_arguments_name_themselves(segmenter):
    with pytest.raises(ValueError, match="profile"):
        AdssSegmenter("large")
    with pytest.raises(ValueError, match="edit_queries"):
        segmenter.preview(IMAGE, "hair")
    with pytest.raises(ValueError, match="image"):
        segmenter.preview(np.zeros((4, 4)), ["a"])
    with pytest.raises(ValueError, match="threshold"):
        AdssConfig(threshold=2.0)
    with pytest.raises(ValueError, match="sam_model"):
        AdssConfig(sam_model="sam-vit-l")


def test_tiny_adss_runs_end_to_end_on_a_sample_scene_view(tmp_path):
    sample = pytest.importorskip("edit3d.scene.sample")
    scene = sample.make_sample_scene(tmp_path / "scene", num_views=24, resolution=64, seed=0)
    image = scene.image(scene.views[0].name)
    segmenter = AdssSegmenter("tiny", seed=0)
    preview = segmenter.preview(image, ["person head"], ["ground"])
    assert isinstance(preview.caption, str) and preview.caption
    assert set(preview.heatmaps) == {"person head", "ground"}
    for heatmap in preview.heatmaps.values():
        assert heatmap.shape == image.shape[:2]
        assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert preview.num_proposals >= 1
    for match in preview.matches.values():
        assert match.mask.shape == image.shape[:2] and 0.0 <= match.iou <= 1.0
    expected = combine_edit_mask(
        [preview.matches["person head"].mask], [preview.matches["ground"].mask], image.shape[:2]
    )
    assert np.array_equal(preview.edit_mask, expected)
    assert preview.soft_mask.shape == image.shape[:2]
    assert np.all((preview.soft_mask >= 0) & (preview.soft_mask <= 1))
    assert any("pipeline check" in w for w in preview.warnings)


def test_summary_reports_choices_runner_ups_and_fallbacks(segmenter):
    summary = segmenter.preview(IMAGE, ["b", "unicorn"], ["a"], caption="boxes").summary()
    assert summary["caption"] == "boxes" and summary["sam_masks"] == 3
    assert summary["queries"]["b"]["role"] == "edit" and summary["queries"]["a"]["role"] == "keep"
    assert summary["queries"]["b"]["sam_mask"] == 1
    assert summary["queries"]["b"]["runner_up"] == {"sam_mask": 0, "iou": 0.0}
    assert summary["queries"]["unicorn"]["fallback"] is True
    assert summary["edit_fraction"] == pytest.approx(OBJECTS["b"].mean())
    assert any("unicorn" in w for w in summary["warnings"])
