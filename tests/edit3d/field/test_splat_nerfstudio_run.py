"""A splatfacto node written as an ns-train run opens with nerfstudio's `eval_setup`, and an
ns-train splatfacto run imports back as the same field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edit3d.field import (
    field_from_checkpoint,
    field_from_nerfstudio_run,
    get_preset,
    write_nerfstudio_run,
)
from edit3d.field.model import _lpips_deferred
from edit3d.field.radiance import as_new_camera
from edit3d.field.testing import cached_tiny_base


@pytest.fixture(scope="module")
def written_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint of the shared tiny splat base, config.yml of it as an ns-train run)."""
    _, checkpoint = cached_tiny_base(
        tmp_path_factory.getbasetemp() / "core-tiny-splat-base",
        config=get_preset("tiny", "splatfacto"),
    )
    out = tmp_path_factory.mktemp("ns-splat-run")
    config_yml = write_nerfstudio_run(field_from_checkpoint(checkpoint), out, timestamp="t0")
    assert config_yml.parent == out / "edit3d" / "splatfacto" / "t0"
    return checkpoint, config_yml


def test_eval_setup_loads_the_gaussians_edit3d_renders(written_run: tuple[Path, Path]) -> None:
    from nerfstudio.models.splatfacto import SplatfactoModel
    from nerfstudio.utils.eval_utils import eval_setup

    from edit3d.field.splatfacto_field import OfflineSplatfactoModel

    checkpoint, config_yml = written_run
    with _lpips_deferred():  # splatfacto's eval-only LPIPS would download AlexNet here
        _, pipeline, _, step = eval_setup(config_yml, test_mode="inference")
    field = field_from_checkpoint(checkpoint)
    model = pipeline.model
    assert type(model) is SplatfactoModel and step == field.step - 1
    assert model.num_points == field.num_gaussians
    for name, value in field.model.gauss_params.items():
        torch.testing.assert_close(model.gauss_params[name].cpu(), value.cpu(), msg=name)
    # nerfstudio's own forward needs CUDA kernels; render its loaded model through the
    # same rasterizer to show the run holds exactly the field edit3d renders.
    model.__class__ = OfflineSplatfactoModel
    model.rasterizer = "torch"
    model.step = field.step
    model.eval()
    view = field.views[5]
    camera = field.nerfstudio_camera(as_new_camera(view))
    theirs = model.get_outputs_for_camera(camera)["rgb"].cpu().numpy()
    ours = field.render(as_new_camera(view)).rgb
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    dataset_camera = pipeline.datamanager.train_dataset.cameras.camera_to_worlds[5]
    np.testing.assert_allclose(
        dataset_camera.numpy(), camera.camera_to_worlds[0].cpu().numpy(), atol=1e-4
    )


def test_ns_train_splatfacto_run_imports_back(written_run: tuple[Path, Path]) -> None:
    checkpoint, config_yml = written_run
    field = field_from_checkpoint(checkpoint)
    again = field_from_nerfstudio_run(config_yml)
    assert again.backend == "splatfacto" and again.config.rasterizer == "torch"
    assert again.step == field.step and again.num_gaussians == field.num_gaussians
    assert [v.name for v in again.views] == [v.name for v in field.views]
    view = as_new_camera(field.views[3])
    np.testing.assert_allclose(again.render(view).rgb, field.render(view).rgb, atol=1e-6)
