"""The turn's objective: IN2N's L1 + LPIPS on whole patches, the presets that choose it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edit3d.editing.turns import TurnSpec, run_turn
from edit3d.field import field_from_dataset, get_preset
from edit3d.field.objective import TrainingObjective, photometric_losses
from edit3d.field.targets import TargetStore
from edit3d.field.testing import make_tiny_scene
from edit3d.models.lpips import LPIPS_ALEX
from edit3d.models.registry import load_model


def test_presets_map_to_in2n_variants() -> None:
    paper = get_preset("paper").turn_objective()
    assert paper == TrainingObjective(
        loss="l1+lpips", rays_per_batch=16_384, patch_size=32, lpips_weight=1.0
    )
    assert paper.patches_per_batch == 16
    assert get_preset("small").turn_objective() == paper  # in2n-small trains as in2n does
    tiny = get_preset("tiny").turn_objective()
    assert (tiny.loss, tiny.patch_size, tiny.rays_per_batch) == ("mse", 1, 512)


def test_objective_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainingObjective(loss="ssim")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs patch_size ≥ 2"):
        TrainingObjective(loss="l1+lpips", patch_size=1)
    with pytest.raises(ValueError, match="at least one 32×32 patch"):
        TrainingObjective(rays_per_batch=1000, patch_size=32)
    with pytest.raises(ValueError, match=r"FieldConfig turn loss settings.*patch_size must be ≥ 1"):
        dataclasses.replace(get_preset("paper"), turn_patch_size=0)


def test_loss_is_l1_plus_weighted_lpips_over_the_patches() -> None:
    objective = TrainingObjective(
        loss="l1+lpips", rays_per_batch=3 * 32 * 32, patch_size=32, lpips_weight=0.7,
        lpips_profile="tiny",
    )  # fmt: skip
    lpips = load_model(LPIPS_ALEX, "tiny", seed=3)
    generator = torch.Generator().manual_seed(1)
    rendered = torch.rand((3 * 32 * 32, 3), generator=generator)
    target = torch.rand((3 * 32 * 32, 3), generator=generator)
    losses = photometric_losses(rendered, target, objective, lpips)

    l1 = np.abs(rendered.numpy() - target.numpy()).mean()
    # the batch is patch by patch, row-major: pixel (p, y, x) is row p·1024 + y·32 + x
    as_images = [np.zeros((3, 3, 32, 32), np.float32) for _ in range(2)]
    for flat, image in zip((rendered.numpy(), target.numpy()), as_images, strict=True):
        for p in range(3):
            for y in range(32):
                for x in range(32):
                    image[p, :, y, x] = flat[p * 1024 + y * 32 + x]
    with torch.no_grad():
        by_hand = lpips(*(torch.from_numpy(i) for i in as_images))
    assert float(losses["rgb_loss"]) == pytest.approx(l1, rel=1e-6)
    assert float(losses["lpips_loss"]) == pytest.approx(0.7 * float(by_hand), rel=1e-5)
    assert photometric_losses(rendered, target, dataclasses.replace(objective, loss="mse")) == {}
    only_l1 = photometric_losses(rendered, target, dataclasses.replace(objective, loss="l1"))
    assert set(only_l1) == {"rgb_loss"}


class KeepCondition:
    """Editor that returns its condition image (the test is about the training batch)."""

    def edit(self, render, condition, instruction, *, view_name, seed=None, cancel=None):
        return condition.copy()


def test_a_turn_with_the_in2n_loss_trains_on_whole_32px_patches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, resolution=48)
    config = dataclasses.replace(
        get_preset("tiny"),
        turn_loss="l1+lpips", turn_rays_per_batch=2 * 32 * 32, turn_patch_size=32,
        lpips_weight=0.5, lpips_profile="tiny",
    )  # fmt: skip
    field = field_from_dataset(scene.root, config)
    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    sample_patches = TargetStore.sample_patches

    def recording(store, num_patches, patch_size, generator):
        view, coords, rgb = sample_patches(store, num_patches, patch_size, generator)
        drawn.append((view.numpy().copy(), coords.numpy().copy()))
        return view, coords, rgb

    def single_rays(*args, **kwargs):
        raise AssertionError("a turn with patches drew independent rays")

    monkeypatch.setattr(TargetStore, "sample_patches", recording)
    monkeypatch.setattr(TargetStore, "sample", single_rays)
    spec = TurnSpec("keep it", mode="in2n", steps=3, edit_rate=100)
    result = run_turn(field, spec, tmp_path / "turn", KeepCondition())

    assert len(drawn) == 3 and result.steps == 3 and np.isfinite(result.loss)
    for view, coords in drawn:
        yx = (coords - 0.5).astype(int).reshape(2, 32, 32, 2)
        rows, cols = np.mgrid[0:32, 0:32]
        np.testing.assert_array_equal(yx[..., 0], yx[:, :1, :1, 0] + rows)
        np.testing.assert_array_equal(yx[..., 1], yx[:, :1, :1, 1] + cols)
        assert (yx >= 0).all() and (yx < 48).all()
        patch_views = view.reshape(2, 32 * 32)
        assert (patch_views == patch_views[:, :1]).all()


def test_a_turn_whose_loss_lacks_real_weights_stops_before_its_prerenders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edit3d.models.registry import MODELS_DIR_ENV, ModelNotAvailable

    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "no-models"))
    scene = make_tiny_scene(tmp_path / "scene", num_views=2, resolution=32)
    config = dataclasses.replace(
        get_preset("tiny"), turn_loss="l1+lpips", turn_rays_per_batch=32 * 32, turn_patch_size=32
    )  # lpips_profile "real", as the paper and small presets
    field = field_from_dataset(scene.root, config)
    renders: list[str] = []
    monkeypatch.setattr(field, "render", lambda view, **_: renders.append(view.name))

    with pytest.raises(ModelNotAvailable, match="edit3d models fetch lpips-alex"):
        run_turn(field, TurnSpec("keep it", steps=2), tmp_path / "turn", KeepCondition())
    assert renders == [] and field.step == 0 and not (tmp_path / "turn").exists()
