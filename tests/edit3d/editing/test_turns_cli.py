"""`edit3d train / edit / history / checkout / render` end to end (tiny models, 16 px)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edit3d.cli import main
from edit3d.field.testing import make_tiny_scene


def test_command_line_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    ws = tmp_path / "ws"
    assert main(["train", str(scene.root), "-w", str(ws), "--preset", "tiny", "--steps", "6",
                 "--device", "cpu"]) == 0  # fmt: skip
    edit = ["edit", "-w", str(ws), "--editor", "ip2p-tiny", "--steps", "4", "--edit-rate", "2",
            "--device", "cpu"]  # fmt: skip
    assert main([*edit, "--turn", "make it red", "--turn", "add a hat"]) == 0
    out = capsys.readouterr().out
    assert "turn-0002: 'add a hat' finished" in out and "not an edit" in out

    assert main(["checkout", "-w", str(ws), "turn-0001"]) == 0
    assert main([*edit, "--turn", "make it blue", "--mode", "in2n"]) == 0
    capsys.readouterr()
    assert main(["history", "-w", str(ws)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["base", "turn-0001", "turn-0002", "*"]
    assert "turn-0003" in lines[3] and "[in2n]" in lines[3]
    # turn-0002 and turn-0003 are both children of turn-0001: same indentation
    assert lines[2].index("turn-0002") == lines[3].index("turn-0003")
    data = json.loads((ws / "workspace.json").read_text())
    assert {t["id"]: t["parent"] for t in data["turns"]}["turn-0003"] == "turn-0001"

    out_dir = tmp_path / "renders"
    render = ["render", "-w", str(ws), "--turn", "turn-0001", "--out", str(out_dir)]
    assert main([*render, "--views", scene.views[0].name, "--width", "24", "--device", "cpu"]) == 0
    image = np.asarray(Image.open(out_dir / "images__frame_00000.png"))
    assert image.shape == (24, 24, 3) and image.std() > 0
