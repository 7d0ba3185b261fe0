"""Workspace: base, turn history with parents, branches, checkout, recovery, nothing overwritten."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edit3d.editing.turns import TurnSpec
from edit3d.field import get_preset
from edit3d.field.testing import make_tiny_scene
from edit3d.progress import Cancelled, CancelToken, ProgressEvent
from edit3d.workspace import Workspace

CONFIGS = {
    "nerfacto": dataclasses.replace(get_preset("tiny"), checkpoint_every=5, rays_per_batch=256),
    "splatfacto": dataclasses.replace(get_preset("tiny", "splatfacto"), checkpoint_every=5),
}
"""Every test here runs on each field backend: the workspace never asks which one it has."""


class Tint:
    """Test editor: pulls the condition image toward one colour (named in the instruction)."""

    def edit(self, render, condition, instruction, *, view_name, seed=None, cancel=None):
        colours = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
        colour = np.array(colours[instruction.split()[-1]], np.float32)
        return (0.3 * condition + 0.7 * colour).astype(np.float32)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a (briefly) trained base, copied per test."""
    scene = make_tiny_scene(tmp_path_factory.mktemp("ws-scene"), num_views=8, resolution=24)
    root = tmp_path_factory.mktemp("ws") / "workspace"
    config = CONFIGS[request.param]
    workspace = Workspace.create(root, dataset=scene.root, preset="tiny", config=config)
    events: list[ProgressEvent] = []
    record = workspace.train_base(steps=12, progress=events.append)
    assert record.status == "finished" and workspace.head == "base"
    assert [e.step for e in events] == list(range(1, 13)) and events[-1].phase == "train_base"
    assert record.timings["train_s"] > 0 and record.timings["total_s"] >= record.timings["train_s"]
    return root


@pytest.fixture
def workspace(trained: Path, tmp_path: Path) -> Workspace:
    import shutil

    shutil.copytree(trained, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws")


def turn(instruction: str, steps: int = 10) -> TurnSpec:
    return TurnSpec(instruction, steps=steps, edit_rate=2, lr=0.02, editor="unused")


def test_history_branch_and_checkout(workspace: Workspace) -> None:
    first = workspace.run_turn(turn("make it red"), editor=Tint())
    base_digest = digest(workspace.checkpoint_path("base"))
    first_digest = digest(workspace.checkpoint_path(first.id))
    second = workspace.run_turn(turn("make it green"), editor=Tint())
    assert (first.parent, second.parent) == ("base", first.id)
    assert workspace.head == second.id

    workspace.checkout(first.id)
    branch = workspace.run_turn(turn("make it blue"), editor=Tint())
    assert branch.parent == first.id and workspace.head == branch.id
    assert [r.id for r in workspace.lineage()] == ["base", first.id, branch.id]
    assert {r.kind for r in workspace.turns} == {"base", "edit"}
    # nothing finished was rewritten by later turns
    assert digest(workspace.checkpoint_path("base")) == base_digest
    assert digest(workspace.checkpoint_path(first.id)) == first_digest

    view = workspace.load_field().views[0]
    mean = {r.id: workspace.render(view, r.id).rgb.mean(axis=(0, 1)) for r in workspace.turns}
    # each node's render moved toward its own colour from its parent's
    assert mean[first.id][0] - mean["base"][0] > 0.03
    assert mean[second.id][1] - mean[first.id][1] > 0.03
    assert mean[branch.id][2] - mean[first.id][2] > 0.03
    assert mean[branch.id][1] < mean[second.id][1]  # the branch never saw "green"

    record = workspace.turn(branch.id)
    assert record.turn_spec == turn("make it blue") and record.steps == 10
    for phase in ("load_s", "prerender_s", "train_s", "edit_s", "total_s"):
        assert record.timings[phase] > 0, phase
    turn_dir = workspace.node_dir(branch.id)
    assert json.loads((turn_dir / "turn.json").read_text())["status"] == "finished"
    assert (turn_dir / "prerenders" / "prerenders.npz").is_file()
    reopened = Workspace.open(workspace.root)
    assert reopened.turns == workspace.turns and reopened.head == branch.id
    with pytest.raises(ValueError, match="finished"):
        workspace.discard_turn(first.id)


def test_killed_turn_is_recovered_as_interrupted_and_resumes(workspace: Workspace) -> None:
    class Killed(BaseException):
        """Stands in for SIGKILL: nothing in the process gets to react."""

    def die_at_7(event: ProgressEvent) -> None:
        if event.phase == "turn" and event.step == 7:
            raise Killed

    with pytest.raises(Killed):
        workspace.run_turn(turn("make it red"), editor=Tint(), progress=die_at_7)
    node = workspace.turns[-1]
    assert node.status == "running"
    # the process is gone: make the record name one that has exited
    data = json.loads((workspace.root / "workspace.json").read_text())
    proc = subprocess.Popen(["true"])
    proc.wait()
    data["turns"][-1]["owner"]["pid"] = proc.pid
    (workspace.root / "workspace.json").write_text(json.dumps(data))

    reopened = Workspace.open(workspace.root)
    assert reopened.recover() == [node.id]
    assert reopened.turn(node.id).status == "interrupted"
    assert reopened.head == "base"  # an unfinished node never becomes head
    with pytest.raises(ValueError, match="interrupted"):
        reopened.load_field(node.id)
    events: list[ProgressEvent] = []
    record = reopened.resume_turn(node.id, editor=Tint(), progress=events.append)
    assert record.status == "finished" and reopened.head == node.id
    assert next(e.step for e in events if e.phase == "turn") == 6  # from the step-5 checkpoint


def test_cancelled_turn_can_be_discarded(workspace: Workspace) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        workspace.run_turn(turn("make it red"), editor=Tint(), cancel=cancel)
    node = workspace.turns[-1]
    assert node.status == "cancelled" and node.message
    workspace.discard_turn(node.id)
    assert [r.id for r in workspace.turns] == ["base"]
    assert not (workspace.root / node.paths["dir"]).exists()
    again = workspace.run_turn(turn("make it red", steps=2), editor=Tint())
    assert again.id != node.id  # ids are never reused


def test_failed_editor_marks_the_turn_failed(workspace: Workspace) -> None:
    class Broken:
        def edit(self, *_args: object, **_kwargs: object) -> np.ndarray:
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        workspace.run_turn(turn("make it red"), editor=Broken())
    node = workspace.turns[-1]
    assert node.status == "failed" and "out of memory" in node.message
    assert workspace.head == "base"


def test_create_validates(tmp_path: Path, trained: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Workspace.create(tmp_path / "a")
    with pytest.raises(ValueError, match="already"):
        Workspace.create(trained, dataset=tmp_path)
    with pytest.raises(ValueError, match="not a workspace"):
        Workspace.open(tmp_path)
    workspace = Workspace.open(trained)
    with pytest.raises(ValueError, match="already trained"):
        workspace.train_base(steps=1)
    with pytest.raises(ValueError, match="turn_id"):
        workspace.checkout("turn-9999")


KILLED_TURN_SCRIPT = """
import sys, time
from edit3d.editing.turns import TurnSpec
from edit3d.workspace import Workspace

class Slow:
    def edit(self, render, condition, instruction, **_kwargs):
        time.sleep(0.05)
        return condition

spec = TurnSpec("slowly", steps=5000, edit_rate=1, lr=0.02, editor="unused")
Workspace.open(sys.argv[1]).run_turn(spec, editor=Slow(), checkpoint_every=3)
"""


def test_sigkill_mid_turn(workspace: Workspace) -> None:
    import os
    import sys
    import time

    first = workspace.run_turn(turn("make it red"), editor=Tint())
    first_digest = digest(workspace.checkpoint_path(first.id))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_TURN_SCRIPT, str(workspace.root)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = workspace.root / "turns" / "turn-0002" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.kill()
    process.wait()
    assert checkpoint.is_file(), "the turn never wrote its first periodic checkpoint"

    reopened = Workspace.open(workspace.root)
    assert reopened.turn("turn-0002").status == "running"
    assert reopened.recover() == ["turn-0002"]
    assert reopened.head == first.id
    assert digest(reopened.checkpoint_path(first.id)) == first_digest

    cancel = CancelToken()
    events: list[ProgressEvent] = []

    def stop_soon(event: ProgressEvent) -> None:
        events.append(event)
        if event.phase == "turn":
            cancel.cancel()

    class Instant:
        def edit(self, render, condition, instruction, **_kwargs):
            return condition

    with pytest.raises(Cancelled):
        reopened.resume_turn("turn-0002", editor=Instant(), progress=stop_soon, cancel=cancel)
    resumed_from = next(e.step for e in events if e.phase == "turn") - 1
    assert resumed_from > 0 and resumed_from % 3 == 0  # a periodic checkpoint, not step 0
    assert reopened.turn("turn-0002").status == "cancelled"


@pytest.mark.parametrize("backend", sorted(CONFIGS))
def test_cancelled_base_training_resumes_where_it_stopped(tmp_path: Path, backend: str) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=8, resolution=16)
    workspace = Workspace.create(
        tmp_path / "ws", dataset=scene.root, preset="tiny", config=CONFIGS[backend]
    )
    cancel = CancelToken()

    def cancel_at_7(event: ProgressEvent) -> None:
        if event.step == 7:
            cancel.cancel()

    with pytest.raises(Cancelled):
        workspace.train_base(steps=12, progress=cancel_at_7, cancel=cancel)
    assert workspace.turn("base").status == "cancelled" and workspace.head is None
    with pytest.raises(ValueError, match="no finished node"):
        workspace.run_turn(turn("make it red"), editor=Tint())
    events: list[ProgressEvent] = []
    record = workspace.train_base(steps=12, progress=events.append)
    assert [e.step for e in events] == list(range(8, 13))
    assert record.status == "finished" and record.steps == 12 and workspace.head == "base"
    assert workspace.load_field().step == 12
    assert workspace.backend == backend == workspace.load_field().backend
