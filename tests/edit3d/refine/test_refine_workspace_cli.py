"""The refine node in a workspace's history, and the refine / export / timings / eval CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edit3d.cli import main
from edit3d.export.ply import read_ply
from edit3d.field import get_preset
from edit3d.field.testing import make_tiny_scene
from edit3d.models.sr import build_tiny_realesrgan
from edit3d.progress import Cancelled, CancelToken
from edit3d.refine.finetune import RefineConfig, load_targets
from edit3d.refine.node import TARGETS_DIR, run_refine
from edit3d.workspace import Workspace


@pytest.fixture(scope="module")
def workspace_root(tmp_path_factory):
    scene = make_tiny_scene(tmp_path_factory.mktemp("ws-scene"), num_views=6, resolution=24)
    root = tmp_path_factory.mktemp("ws") / "workspace"
    config = dataclasses.replace(get_preset("tiny"), rays_per_batch=256, checkpoint_every=2)
    workspace = Workspace.create(root, dataset=scene.root, config=config, preset="tiny")
    workspace.train_base(steps=4)
    return root


def test_refine_becomes_a_finished_node_and_the_new_head(workspace_root):
    workspace = Workspace.open(workspace_root)
    config = RefineConfig(steps=3, faces=False, render_long_side=12)
    record = run_refine(workspace, None, config, esrgan=build_tiny_realesrgan(0))
    assert record.kind == "refine" and record.parent == "base" and record.status == "finished"
    assert workspace.head == record.id
    assert record.steps == 4 + 3  # the field's iteration count continues from its parent
    assert {"upscale_s", "train_s", "total_s"} <= set(record.timings)
    targets = load_targets(workspace.node_dir(record.id) / TARGETS_DIR)
    assert len(targets) == 6 and all(t.shape == (48, 48, 3) for t in targets.values())
    refined = workspace.load_field(record.id)
    assert refined.step == 7


def test_cancelled_refine_is_recorded_and_leaves_the_head(workspace_root):
    workspace = Workspace.open(workspace_root)
    head = workspace.head
    token = CancelToken()

    def cancel_on_second_step(event):
        if event.phase == "refine" and event.step == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        run_refine(
            workspace,
            "base",
            RefineConfig(steps=20, faces=False, render_long_side=12),
            esrgan=build_tiny_realesrgan(0),
            progress=cancel_on_second_step,
            cancel=token,
        )
    reopened = Workspace.open(workspace_root)
    assert reopened.turns[-1].status == "cancelled" and reopened.turns[-1].kind == "refine"
    assert reopened.head == head


def test_cli_refine_export_timings_and_eval(workspace_root, tmp_path, capsys):
    code = main(
        ["refine", "-w", str(workspace_root), "--parent", "base", "--steps", "2",
         "--profile", "tiny", "--render-long-side", "8", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "pipeline check" in out

    data = json.loads((workspace_root / "workspace.json").read_text())
    head = data["head"]
    cloud_path = tmp_path / "cloud.ply"
    code = main(
        ["export", "-w", str(workspace_root), "--kind", "pointcloud", "--out", str(cloud_path),
         "--budget", "500", "--accumulation", "0.0", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    vertex = read_ply(cloud_path)["vertex"]
    assert 0 < len(vertex["x"]) <= 500

    mesh_path = tmp_path / "mesh.glb"
    code = main(
        ["export", "-w", str(workspace_root), "--turn", "base", "--kind", "mesh", "--out",
         str(mesh_path), "--resolution", "16", "--accumulation", "0.0", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0 and mesh_path.read_bytes()[:4] == b"glTF"
    capsys.readouterr()

    assert main(["timings", "-w", str(workspace_root), "--hardware", "test cpu"]) == 0
    table = capsys.readouterr().out
    assert "refine" in table and "base" in table and "3.48" in table and head in table

    code = main(
        ["eval", "clip", "-w", str(workspace_root), "--nodes", "base", head, "--captions",
         "two spheres", "two shiny spheres", "--views", "3", "--clip", "tiny",
         "--render-long-side", "16", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "clip-vit-l14 (tiny)" in table and "pipeline check" in table
    assert f"(base, {head})" in table
    score = float(table.split("CLIP directional score")[1].split()[0])
    assert -1.0 <= score <= 1.0 and np.isfinite(score)


def test_eval_clip_refuses_a_caption_count_mismatch(workspace_root, capsys):
    assert main(["eval", "clip", "-w", str(workspace_root), "--nodes", "base", "--captions",
                 "a", "b", "--clip", "tiny", "--device", "cpu"]) == 2  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert "2 captions for 1 nodes" in error and "\n" not in error
