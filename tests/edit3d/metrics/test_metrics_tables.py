"""Tab. 1-style CLIP evaluation over a chain of nodes, and Tab. 2-style timings."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from edit3d.metrics.evaluate import (
    evaluate_chain,
    evaluation_views,
    format_clip_table,
)
from edit3d.metrics.timings import format_timings_table, phase_timings
from edit3d.models.clip import build_tiny_clip
from edit3d.scene.cameras import CameraView, Intrinsics


@dataclass
class _Render:
    rgb: np.ndarray


class _FlatField:
    """Renders every view in one colour."""

    def __init__(self, color):
        self.color = np.asarray(color, np.float32)

    def render(self, view, *, width=None, height=None):
        return _Render(np.broadcast_to(self.color, (height, width, 3)).copy())


class _ColourClip:
    name = "colour-words"
    words: ClassVar[dict] = {"red": [1, 0, 0], "green": [0, 1, 0], "blue": [0, 0, 1]}

    def image_features(self, images):
        f = np.stack([im.reshape(-1, 3).mean(0) for im in images])
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    def text_features(self, texts):
        f = np.stack([np.sum([self.words[w] for w in t.split()], axis=0) for t in texts])
        return f / np.linalg.norm(f, axis=1, keepdims=True)


def _views(n=4):
    k = Intrinsics(8.0, 8.0, 4.0, 4.0, 8, 8)
    views = []
    for i in range(n):
        c2w = np.eye(4)
        angle = i * 0.3
        c2w[:3, :3] = [
            [np.cos(angle), -np.sin(angle), 0],
            [np.sin(angle), np.cos(angle), 0],
            [0, 0, 1],
        ]
        c2w[:3, 3] = [i, 0, 0]
        views.append(CameraView(f"frame_{i}.png", c2w, k))
    return views


def test_evaluation_views_subsample_or_interpolate():
    views = _views(4)
    assert [v.name for v in evaluation_views(views, 2)] == ["frame_0.png", "frame_3.png"]
    many = evaluation_views(views, 7)  # half-way poses between every pair
    assert len(many) == 7 and many[0] is views[0] and many[6] is views[3]
    np.testing.assert_allclose(many[1].position, [0.5, 0, 0])
    half = many[1].c2w[:3, :3]
    expected = np.array(
        [[np.cos(0.15), -np.sin(0.15), 0], [np.sin(0.15), np.cos(0.15), 0], [0, 0, 1]]
    )
    np.testing.assert_allclose(half, expected, atol=1e-9)


def test_chain_scores_each_turn_pair_and_the_mean():
    fields = [_FlatField([1, 0, 0]), _FlatField([0, 1, 0]), _FlatField([0, 0, 1])]
    result = evaluate_chain(
        fields, ["base", "t1", "t2"], ["red", "green", "red"], _ColourClip(), _views(3)
    )
    # red→green matches its caption change exactly; green→blue against "green"→"red" does not
    assert result.directional[0] == pytest.approx(1.0)
    assert result.directional[1] == pytest.approx(0.5)
    assert result.mean_directional == pytest.approx(0.75)
    assert result.text_image == pytest.approx([1.0, 1.0, 0.0])
    table = format_clip_table(result)
    assert "CLIP model: colour-words" in table and "(base, t1)" in table and "0.7500" in table
    assert "pipeline check" not in table
    with pytest.raises(ValueError, match="captions"):
        evaluate_chain(fields, ["base", "t1", "t2"], ["red", "green"], _ColourClip(), _views(3))


def test_tiny_clip_table_says_pipeline_check():
    fields = [_FlatField([0.2, 0.4, 0.6]), _FlatField([0.6, 0.4, 0.2])]
    result = evaluate_chain(fields, ["base", "t1"], ["a", "b"], build_tiny_clip(0), _views(2))
    table = format_clip_table(result)
    assert "clip-vit-l14 (tiny)" in table and "pipeline check" in table


def test_timings_table_per_phase_scaled_to_10k():
    records = [
        SimpleNamespace(id="base", kind="base", status="finished", spec={"steps": 300},
                        timings={"load_s": 2.0, "train_s": 57.0, "total_s": 60.0},
                        created=1000.0, finished=1061.0, steps=300),
        {"id": "turn-0001", "kind": "edit", "status": "finished",
         "spec": {"mode": "in2n", "steps": 200}, "timings": {},
         "created": 2000.0, "finished": 2120.0, "steps": 200},
        SimpleNamespace(id="turn-0002", kind="refine", status="running", spec={"steps": 50},
                        timings={}, created=3000.0, finished=None, steps=0),
    ]  # fmt: skip
    timings = phase_timings(records)
    assert [t.phase for t in timings] == ["base", "edit (in2n)", "refine"]
    assert timings[0].seconds == 60.0 and timings[0].minutes_per_10k == pytest.approx(33.333, 1e-3)
    assert timings[1].minutes_per_10k == pytest.approx(100.0)
    assert timings[2].seconds is None
    table = format_timings_table(timings, hardware="test cpu")
    assert "44.16" in table and "3.48" in table and "33.33" in table and "test cpu" in table
