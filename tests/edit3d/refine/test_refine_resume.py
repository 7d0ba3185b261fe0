"""A refine node interrupted mid-way resumes from its periodic checkpoint and saved targets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from edit3d.field import get_preset
from edit3d.field.testing import make_tiny_scene
from edit3d.models.sr import build_tiny_realesrgan
from edit3d.progress import ProgressEvent
from edit3d.refine.finetune import CHECKPOINT_KEY, RefineConfig
from edit3d.refine.node import TARGETS_DIR, run_refine
from edit3d.workspace import Workspace

CONFIG = RefineConfig(steps=8, faces=False, render_long_side=12)


class Killed(BaseException):
    """Stands in for the process dying: nothing in it gets to react."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = make_tiny_scene(tmp_path_factory.mktemp("scene"), num_views=6, resolution=24)
    root = tmp_path_factory.mktemp("ws") / "workspace"
    config = dataclasses.replace(get_preset("tiny"), rays_per_batch=256, checkpoint_every=2)
    Workspace.create(root, dataset=scene.root, config=config, preset="tiny").train_base(steps=4)
    return root


def copy_of(trained: Path, folder: Path) -> Workspace:
    shutil.copytree(trained, folder)
    return Workspace.open(folder)


def mark_owner_exited(root: Path) -> None:
    """Make the running node's record name a process that has ended."""
    data = json.loads((root / "workspace.json").read_text())
    proc = subprocess.Popen(["true"])
    proc.wait()
    data["turns"][-1]["owner"]["pid"] = proc.pid
    (root / "workspace.json").write_text(json.dumps(data))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.usefixtures("single_thread")
def test_killed_refine_resumes_from_its_checkpoint_without_upscaling(
    trained: Path, tmp_path: Path
) -> None:
    straight = copy_of(trained, tmp_path / "straight")
    done = run_refine(straight, "base", CONFIG, esrgan=build_tiny_realesrgan(0))

    def die_at_5(event: ProgressEvent) -> None:
        if event.phase == "refine" and event.step == 5:
            raise Killed

    workspace = copy_of(trained, tmp_path / "killed")
    with pytest.raises(Killed):
        run_refine(workspace, "base", CONFIG, esrgan=build_tiny_realesrgan(0), progress=die_at_5)
    node = workspace.turns[-1]
    assert node.kind == "refine" and node.status == "running"
    saved = torch.load(workspace.checkpoint_path(node.id), weights_only=True)
    assert saved["extra"][CHECKPOINT_KEY] == 4  # the last periodic checkpoint (every 2)
    targets_before = digests(workspace.node_dir(node.id) / TARGETS_DIR)

    mark_owner_exited(workspace.root)
    reopened = Workspace.open(workspace.root)
    assert reopened.recover() == [node.id]
    events: list[ProgressEvent] = []
    # No networks given: upscaling again would need the real Real-ESRGAN weights and fail.
    record = reopened.resume_turn(node.id, progress=events.append)

    assert not [e for e in events if e.phase == "refine_upscale"]
    steps = [e.step for e in events if e.phase == "refine"]
    assert steps == [5, 6, 7, 8] and events[-1].total == 8
    assert record.status == "finished" and reopened.head == node.id
    assert record.steps == done.steps == 4 + 8
    assert digests(reopened.node_dir(node.id) / TARGETS_DIR) == targets_before
    resumed = reopened.load_field(node.id).model.state_dict()
    expected = straight.load_field(done.id).model.state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=0, msg=name)


def test_only_stopped_refine_nodes_resume(trained: Path, tmp_path: Path) -> None:
    workspace = copy_of(trained, tmp_path / "ws")
    record = run_refine(
        workspace, "base", dataclasses.replace(CONFIG, steps=2), esrgan=build_tiny_realesrgan(0)
    )
    with pytest.raises(ValueError, match="interrupted or cancelled"):
        workspace.resume_turn(record.id)
    with pytest.raises(ValueError, match="interrupted or cancelled refine"):
        workspace.reopen_node("base", "refine")
