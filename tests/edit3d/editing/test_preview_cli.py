"""`edit3d preview` and the editor settings on the command line (tiny models, 16 px)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edit3d.cli import build_parser, main
from edit3d.cli_options import CliError
from edit3d.editing.turns import TurnSpec
from edit3d.field.testing import make_tiny_scene
from edit3d.workspace import Workspace


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.float32) / 255.0


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def test_preview_writes_before_mask_after_and_a_sheet_per_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    ws = tmp_path / "ws"
    assert main(["train", str(scene.root), "-w", str(ws), "--preset", "tiny", "--steps", "4",
                 "--device", "cpu"]) == 0  # fmt: skip
    settings = ["--editor", "ip2p-tiny", "--diffusion-steps", "2", "--guidance-scale", "6",
                "--noise-range", "0.2", "0.6", "--resolution", "16", "--device", "cpu"]  # fmt: skip
    out = tmp_path / "preview"
    view = scene.views[1]
    assert main(["preview", "-w", str(ws), "--turn", "make it red", "--camera", view.name,
                 "--seed", "5", "--seeds", "2", "--out", str(out), *settings]) == 0  # fmt: skip
    assert "2 seed(s)" in capsys.readouterr().out
    before5, after5, after6 = (
        _png(out / f"seed_{n}.png") for n in ("5_before", "5_after", "6_after")
    )
    assert before5.shape == after5.shape == (16, 16, 3)
    assert np.abs(after5 - after6).mean() > 1e-3  # the seeds give different edits
    assert np.abs(after5 - before5).mean() > 1e-3
    np.testing.assert_allclose(_png(out / "seed_5_mask.png"), 1.0)  # no query: whole view
    sheet = _png(out / "sheet.png")
    assert sheet.shape == (2 * 16 + 4, 3 * 16 + 2 * 4, 3)  # 2 rows of before|mask|after
    np.testing.assert_allclose(sheet[:16, :16], before5, atol=1 / 255)
    np.testing.assert_allclose(sheet[20:, 40:], after6, atol=1 / 255)

    # A new camera as JSON: half the dataset view's resolution, a step back.
    c2w = np.array(view.c2w)
    c2w[:3, 3] *= 1.2
    k = view.intrinsics.scaled_to(12, 8)
    camera = {"c2w": c2w.tolist(), "fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy,
              "width": 12, "height": 8}  # fmt: skip
    json_out = tmp_path / "json"
    assert main(["preview", "-w", str(ws), "--turn", "make it red", "--camera",
                 json.dumps(camera), "--out", str(json_out), *settings]) == 0  # fmt: skip
    assert _png(json_out / "seed_0_after.png").shape == (8, 12, 3)

    # Errors name what was wrong (called below main's own error handling).
    with pytest.raises(CliError, match="neither a view name"):
        _run(["preview", "-w", str(ws), "--turn", "x", "--camera", "nope", "--out", str(out),
              *settings])  # fmt: skip
    bad = json.dumps({**camera, "fx": -1})
    with pytest.raises(CliError, match="fx, fy > 0"):
        _run(["preview", "-w", str(ws), "--turn", "x", "--camera", bad, "--out", str(out),
              *settings])  # fmt: skip

    # The same settings on a turn are stored in its spec and shown by the history.
    assert main(["edit", "-w", str(ws), "--turn", "make it red", "--steps", "2",
                 "--edit-rate", "2", *settings]) == 0  # fmt: skip
    spec = Workspace.open(ws).turn("turn-0001").turn_spec
    assert isinstance(spec, TurnSpec)
    assert spec.editor_settings.to_dict() == {
        "guidance_scale": 6.0, "image_guidance_scale": 1.5, "diffusion_steps": 2,
        "lower_bound": 0.2, "upper_bound": 0.6, "resolution": 16,
    }  # fmt: skip
    capsys.readouterr()
    assert main(["history", "-w", str(ws)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "text 6 · image 1.5 · 2 steps · noise 0.2–0.6 · 16 px" in line
