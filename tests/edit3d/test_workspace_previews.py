"""Workspace step hooks (live previews): when they run, what field state they see, and that
rendering from them leaves training exactly as it would have been."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edit3d.editing.turns import TurnSpec
from edit3d.field import RadianceField, get_preset
from edit3d.field.testing import make_tiny_scene
from edit3d.progress import Cancelled, CancelToken, ProgressEvent
from edit3d.workspace import Workspace

CONFIG = dataclasses.replace(get_preset("tiny"), checkpoint_every=4, rays_per_batch=256)


class Tint:
    """Test editor: pulls the condition image toward red."""

    def edit(self, render, condition, instruction, *, view_name, seed=None, cancel=None):
        return (0.3 * condition + 0.7 * np.array([1.0, 0.0, 0.0], np.float32)).astype(np.float32)


class Frames:
    """A step hook that renders the first view at 12×12 px, as a live preview would."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.images: dict[int, np.ndarray] = {}

    def __call__(self, field: RadianceField, step: int) -> None:
        self.steps.append(step)
        self.images[step] = field.render(field.views[0], width=12, height=12).rgb


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_scene(tmp_path_factory.mktemp("preview-scene"), num_views=6,
                           resolution=16).root


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.usefixtures("single_thread")
def test_base_hook_sees_each_step_and_previews_do_not_change_training(
    scene_root: Path, tmp_path: Path
) -> None:
    plain = Workspace.create(tmp_path / "plain", dataset=scene_root, preset="tiny", config=CONFIG)
    torch.manual_seed(0)  # nerfstudio draws initial weights and ray jitter from torch's global RNG
    plain.train_base(steps=8, seed=3)
    frames = Frames()
    watched = Workspace.create(tmp_path / "watched", dataset=scene_root, preset="tiny",
                               config=CONFIG)
    torch.manual_seed(0)
    record = watched.train_base(steps=8, seed=3, on_step=frames)

    assert frames.steps == list(range(1, 9))  # after every iteration, the last one included
    final = watched.load_field().render(watched.load_field().views[0], width=12, height=12).rgb
    np.testing.assert_allclose(frames.images[8], final, atol=1e-5)  # the state that was saved
    assert np.abs(frames.images[1] - frames.images[8]).mean() > 1e-3  # it shows training
    assert record.timings["preview_s"] > 0
    assert record.timings["train_s"] + record.timings["preview_s"] <= record.timings["total_s"]
    a, b = weights(plain.checkpoint_path("base")), weights(watched.checkpoint_path("base"))
    assert a.keys() == b.keys()
    for name in a:  # rendering in the loop leaves the training exactly as without it
        assert torch.equal(a[name], b[name]), name


def test_turn_hook_runs_through_cancel_and_resume(scene_root: Path, tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "ws", dataset=scene_root, preset="tiny",
                                 config=CONFIG)
    workspace.train_base(steps=4)
    cancel = CancelToken()

    def stop_after_6(event: ProgressEvent) -> None:
        if event.phase == "turn" and event.step == 6:
            cancel.cancel()

    frames = Frames()
    spec = TurnSpec("make it red", steps=10, edit_rate=3, lr=0.02, editor="unused")
    with pytest.raises(Cancelled):
        workspace.run_turn(spec, editor=Tint(), progress=stop_after_6, cancel=cancel,
                           on_step=frames)
    assert frames.steps == list(range(1, 6))  # the cancel is seen before step 6's hook

    resumed = Frames()
    record = workspace.resume_turn("turn-0001", editor=Tint(), on_step=resumed)
    assert resumed.steps == list(range(7, 11))  # from the checkpoint the cancel saved (6 done)
    assert record.status == "finished" and record.timings["preview_s"] > 0
    final = workspace.load_field("turn-0001")
    np.testing.assert_allclose(
        resumed.images[10], final.render(final.views[0], width=12, height=12).rgb, atol=1e-5
    )
