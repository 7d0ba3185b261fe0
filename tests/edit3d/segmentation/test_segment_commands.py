"""`edit3d segment`, `edit3d eval segmentation`, the evaluation maths and the GT provider."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edit3d.cli import main
from edit3d.segmentation.adss import AdssSegmenter
from edit3d.segmentation.evaluation import evaluate_segmentation
from edit3d.segmentation.ground_truth import GroundTruthMaskProvider
from edit3d.segmentation.image_io import read_mask

H, W = 32, 40


def box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


CUBE = box(4, 4, 16, 16)
BALL = box(18, 22, 30, 36)


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    else:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two images of a red cube and a blue ball, with ground-truth masks per object."""
    for name in ("view_a", "view_b"):
        image = np.full((H, W, 3), 0.8, dtype=np.float32)
        image[CUBE] = (0.9, 0.1, 0.1)
        image[BALL] = (0.1, 0.1, 0.9)
        save_png(tmp_path / "images" / f"{name}.png", image)
        save_png(tmp_path / "masks" / "cube" / f"{name}.png", CUBE)
        save_png(tmp_path / "masks" / "ball" / f"{name}.png", BALL)
    return tmp_path


def test_segment_writes_heatmaps_masks_and_a_report(folder: Path, capsys):
    out = folder / "out"
    argv = ["segment", str(folder / "images" / "view_a.png"), "--query", "red cube"]
    argv += ["--keep-query", "blue ball", "--profile", "tiny", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["profile"] == "tiny" and isinstance(report["caption"], str)
    assert report["queries"]["red cube"]["role"] == "edit"
    assert report["queries"]["blue ball"]["role"] == "keep"
    for row in report["queries"].values():
        assert 0.0 <= row["iou"] <= 1.0
        for name in row["files"]:
            assert Image.open(out / name).size == (W, H)
    edit = read_mask(out / "edit_mask.png")
    match_cube = read_mask(out / "match_00_red-cube.png")
    match_ball = read_mask(out / "match_01_blue-ball.png")
    assert np.array_equal(edit, match_cube & ~match_ball)
    assert Image.open(out / "soft_mask.png").size == (W, H)
    # The mask laid over the image: red where the mask is, the image itself elsewhere.
    image = np.asarray(Image.open(folder / "images" / "view_a.png").convert("RGB"), np.int16)
    overlay = np.asarray(Image.open(out / "overlay_mask.png"), np.int16)
    soft = np.asarray(Image.open(out / "soft_mask.png"), np.float32) / 255.0
    assert np.abs(overlay - image)[soft == 0].max() <= 1
    if (soft == 1).any():
        assert (overlay[..., 0] >= image[..., 0])[soft == 1].all()
        assert (overlay[..., 1] < image[..., 1] + 1)[soft == 1].all()
    assert any("pipeline check" in w for w in report["warnings"])
    assert "caption:" in capsys.readouterr().out


def test_eval_segmentation_runs_with_and_without_captions_and_says_tiny(folder: Path, capsys):
    report_path = folder / "eval.json"
    argv = ["eval", "segmentation", "--images", str(folder / "images")]
    argv += ["--masks", str(folder / "masks"), "--query", "red cube=cube", "--query", "ball"]
    argv += ["--compare-captions", "--profile", "tiny", "--out", str(report_path)]
    assert main(argv) == 0
    runs = json.loads(report_path.read_text())
    assert [r["with_caption"] for r in runs] == [True, False]
    assert all(set(r["per_query_iou"]) == {"red cube", "ball"} for r in runs)
    assert all(0.0 <= r["miou"] <= 1.0 for r in runs)
    assert all(img["caption"] == "" for img in runs[1]["images"])
    printed = capsys.readouterr().out
    assert "pipeline check" in printed and "mIoU" in printed


def test_evaluation_iou_and_miou_are_exact(folder: Path):
    def attention(image, caption, query):  # points at the ball for both queries
        return BALL.astype(np.float32)

    segmenter = AdssSegmenter(
        "real",
        captioner=lambda image: "unused",
        attention=attention,
        proposer=lambda image: [CUBE, BALL],
    )
    queries = {"ball": "ball", "cube": "cube", "lamp": "lamp"}
    result = evaluate_segmentation(
        segmenter, folder / "images", folder / "masks", queries, with_caption=False
    )
    assert result.per_query == {"ball": 1.0, "cube": 0.0}
    assert result.miou == pytest.approx(0.5)
    assert sorted(result.missing) == ["view_a.png: lamp", "view_b.png: lamp"]
    assert result.note == ""


@dataclass
class Spec:
    edit_queries: tuple[str, ...] = ()
    keep_queries: tuple[str, ...] = ()
    caption: str | None = None


def test_ground_truth_provider_reads_named_objects(folder: Path):
    provider = GroundTruthMaskProvider(
        folder / "masks", edge_sigma_px=0.0, objects_for_query={"toys": ("cube", "ball")}
    )
    image = np.zeros((H, W, 3), dtype=np.float32)
    assert np.array_equal(provider("images/view_a.png", image, Spec(("cube",))), CUBE)
    assert np.array_equal(provider("view_b.png", image, Spec(("toys",))), CUBE | BALL)
    assert np.array_equal(provider("view_a.png", image, Spec(keep_queries=("ball",))), ~BALL)
    assert np.all(provider("view_a.png", image, Spec()) == 1.0)
    with pytest.raises(FileNotFoundError, match="lamp"):
        provider("view_a.png", image, Spec(("lamp",)))


def test_ground_truth_provider_follows_the_render_resolution(folder: Path):
    provider = GroundTruthMaskProvider(folder / "masks", edge_sigma_px=0.0)
    half = provider("view_a.png", np.zeros((H // 2, W // 2, 3), np.float32), Spec(("cube",)))
    assert half.shape == (H // 2, W // 2)
    assert np.array_equal(half, CUBE[::2, ::2])


def test_missing_real_weights_are_reported_without_a_traceback(
    folder: Path, tmp_path, capsys, monkeypatch
):
    for name in ("SAM_VIT_H", "BLIP_CAPTION_LARGE", "BLIP_ITM_LARGE_COCO"):
        monkeypatch.delenv(f"EDIT3D_MODEL_PATH_{name}", raising=False)
    monkeypatch.setenv("EDIT3D_MODELS_DIR", str(tmp_path / "empty"))
    argv = ["segment", str(folder / "images" / "view_a.png"), "--query", "cube"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "edit3d segment:" in error and "edit3d models fetch" in error
