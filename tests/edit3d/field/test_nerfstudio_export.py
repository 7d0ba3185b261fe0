"""Any node written as an ns-train run folder opens with nerfstudio's own `eval_setup`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edit3d.field import field_from_checkpoint, field_from_nerfstudio_run
from edit3d.field.model import _lpips_deferred
from edit3d.field.radiance import as_new_camera
from edit3d.field.testing import cached_tiny_base
from edit3d.scene.cameras import CameraView


@pytest.fixture(scope="module")
def written_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint of the shared tiny base, config.yml of it written by `edit3d export`)."""
    _, checkpoint = cached_tiny_base(tmp_path_factory.getbasetemp() / "core-tiny-base")
    out = tmp_path_factory.mktemp("ns-run")
    command = [sys.executable, "-m", "edit3d.cli", "export", "--checkpoint", str(checkpoint)]
    command += ["--kind", "nerfstudio-run", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (config_yml,) = out.glob("edit3d/nerfacto/*/config.yml")
    return checkpoint, config_yml


def test_eval_setup_renders_what_edit3d_renders(written_run: tuple[Path, Path]) -> None:
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
    from nerfstudio.utils.eval_utils import eval_setup

    checkpoint, config_yml = written_run
    run_dir = config_yml.parent
    assert (run_dir / "dataparser_transforms.json").is_file()
    assert len(list((run_dir / "nerfstudio_models").glob("step-*.ckpt"))) == 1
    with _lpips_deferred():  # nerfacto's eval-only LPIPS would download AlexNet here
        _, pipeline, _, step = eval_setup(config_yml, test_mode="inference")
    field = field_from_checkpoint(checkpoint)
    assert step == field.step - 1
    # nerfstudio's trainer replays step-dependent callbacks when it resumes; so do we here,
    # so the proposal annealing matches the field's (a run past 1000 steps needs none).
    attributes = TrainingCallbackAttributes(None, None, None, None)
    for callback in pipeline.model.get_training_callbacks(attributes):
        callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    pipeline.model.eval()
    view = field.views[5]
    camera = field.nerfstudio_camera(as_new_camera(view)).to(pipeline.device)
    theirs = pipeline.model.get_outputs_for_camera(camera)["rgb"].cpu().numpy()
    ours = field.render(as_new_camera(view)).rgb
    print(f"max |nerfstudio - edit3d| = {np.abs(theirs - ours).max():.2e}")
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    # the dataparser the run points at reproduces the field's frame
    saved = json.loads((run_dir / "dataparser_transforms.json").read_text())
    camera_ns = pipeline.datamanager.train_dataset.cameras.camera_to_worlds[5]
    np.testing.assert_allclose(
        camera_ns.numpy(), camera.camera_to_worlds[0].cpu().numpy(), atol=1e-4
    )
    assert saved["scale"] == pytest.approx(field.scale)


def test_written_run_imports_back(written_run: tuple[Path, Path]) -> None:
    checkpoint, config_yml = written_run
    field = field_from_checkpoint(checkpoint)
    again = field_from_nerfstudio_run(config_yml)
    assert again.step == field.step and [v.name for v in again.views] == [
        v.name for v in field.views
    ]
    view = CameraView("a new camera", field.views[3].c2w, field.views[3].intrinsics)
    np.testing.assert_allclose(again.render(view).rgb, field.render(view).rgb, atol=1e-6)
    torch.testing.assert_close(again.model.state_dict(), field.model.state_dict())
