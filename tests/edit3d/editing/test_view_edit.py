"""One view's edit: the turn loop and the preview share it (paper Sec. 3.1–3.2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edit3d.editing.fusion import fuse
from edit3d.editing.ip2p import InstructPix2PixConfig, InstructPix2PixEditor
from edit3d.editing.settings import EditorSettings
from edit3d.editing.turns import TurnSpec, load_image_archive, run_turn
from edit3d.editing.view_edit import edit_seed, preview_edit
from edit3d.field import field_from_checkpoint
from edit3d.field.testing import TinyScene, cached_tiny_base
from edit3d.models.ip2p import build_tiny
from edit3d.scene.cameras import CameraView


class RecordingEditor:
    """Delegates to a real (tiny) InstructPix2Pix editor and records every edit."""

    def __init__(self, inner: InstructPix2PixEditor, log: list | None = None) -> None:
        self.inner = inner
        self.log: list[dict] = [] if log is None else log

    def with_settings(self, settings: EditorSettings) -> RecordingEditor:
        return RecordingEditor(self.inner.with_settings(settings), self.log)

    def edit(self, render, condition, instruction, **kwargs):
        out = self.inner.edit(render, condition, instruction, **kwargs)
        config = self.inner.config
        record = {"render": render, "condition": condition, "out": out}
        record.update(steps=config.diffusion_steps, text=config.guidance_scale, **kwargs)
        self.log.append(record)
        return out


def bright_mask(_name: str, image: np.ndarray, _spec: TurnSpec) -> np.ndarray:
    """A deterministic mask of the image's brighter half."""
    brightness = image.mean(axis=2)
    return (brightness > np.median(brightness)).astype(np.float32)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyScene, Path]:
    # A briefly trained field: these tests compare two paths over one field, not its quality.
    return cached_tiny_base(
        tmp_path_factory.getbasetemp() / "view-edit-tiny-base", steps=30, num_views=6,
        resolution=24,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_editor() -> InstructPix2PixEditor:
    return InstructPix2PixEditor(build_tiny(seed=0, device="cpu"), InstructPix2PixConfig(64))


SETTINGS = EditorSettings(guidance_scale=5.0, diffusion_steps=3, lower_bound=0.3, resolution=32)


def test_preview_at_a_dataset_view_equals_the_turns_first_edit_of_it(
    base: tuple[TinyScene, Path], tiny_editor: InstructPix2PixEditor, tmp_path: Path
) -> None:
    _, checkpoint = base
    spec = TurnSpec("make it red", seed=4, steps=1, edit_rate=1, editor_settings=SETTINGS)
    field = field_from_checkpoint(checkpoint)
    view = field.views[0]
    preview_log: list[dict] = []
    preview = preview_edit(field, view, spec, RecordingEditor(tiny_editor, preview_log),
                           bright_mask)  # fmt: skip

    turn_log: list[dict] = []
    run_turn(field, spec, tmp_path, RecordingEditor(tiny_editor, turn_log), bright_mask)
    first = turn_log[0]
    assert first["view_name"] == view.name and first["seed"] == edit_seed(4, 0, 0)
    # The same seed, settings, render, condition and therefore the same pixels.
    assert preview_log[0]["seed"] == first["seed"]
    assert preview_log[0]["steps"] == first["steps"] == 3
    assert preview_log[0]["text"] == first["text"] == 5.0
    np.testing.assert_allclose(preview.before, first["render"], atol=1e-6)
    np.testing.assert_allclose(preview.edited, first["out"], atol=1e-6)
    prerender = load_image_archive(tmp_path / "prerenders" / "prerenders.npz")[view.name]
    mask = load_image_archive(tmp_path / "masks" / "masks.npz")[view.name]
    np.testing.assert_allclose(preview.mask, mask, atol=1e-6)
    np.testing.assert_allclose(preview.after, fuse(first["out"], prerender, mask), atol=1e-6)
    assert 0.05 < preview.mask.mean() < 0.95  # the mask really selects part of the view
    assert np.abs(preview.after - preview.before).mean() > 1e-3  # and the edit changed it


def test_preview_at_a_new_camera_renders_edits_and_fuses_there(
    base: tuple[TinyScene, Path], tiny_editor: InstructPix2PixEditor
) -> None:
    _, checkpoint = base
    field = field_from_checkpoint(checkpoint)
    dataset_view = field.views[3]
    c2w = dataset_view.c2w.copy()
    c2w[:3, 3] *= 1.15  # a step back from a dataset camera: not a training view
    camera = CameraView("camera:new", c2w, dataset_view.intrinsics.scaled_to(40, 30))
    spec = TurnSpec("make it red", editor_settings=SETTINGS)
    steps: list[tuple[int, int]] = []
    result = preview_edit(field, camera, spec, tiny_editor, bright_mask,
                          on_step=lambda done, total: steps.append((done, total)))  # fmt: skip
    assert result.before.shape == result.after.shape == (30, 40, 3)
    np.testing.assert_allclose(result.before, field.render(camera).rgb, atol=1e-6)
    expected_mask = bright_mask("", result.before, spec)
    np.testing.assert_allclose(result.mask, expected_mask, atol=1e-6)
    np.testing.assert_allclose(result.after, fuse(result.edited, result.before, result.mask),
                               atol=1e-6)  # fmt: skip
    assert steps == [(1, 3), (2, 3), (3, 3)]  # the spec's 3 diffusion steps, reported each


def test_turn_spec_round_trips_editor_settings_and_old_specs_get_defaults() -> None:
    spec = TurnSpec("x", editor_settings=SETTINGS)
    again = TurnSpec.from_dict(spec.to_dict())
    assert again == spec and again.editor_settings.diffusion_steps == 3
    old = {k: v for k, v in spec.to_dict().items() if k != "editor_settings"}
    assert TurnSpec.from_dict(old).editor_settings == EditorSettings()
    with pytest.raises(ValueError, match=r"unknown editor settings.*'cfg'"):
        TurnSpec("x", editor_settings={"cfg": 3})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="diffusion_steps"):
        dataclasses.replace(SETTINGS, diffusion_steps=0)


def test_paper_defaults_have_one_owner() -> None:
    defaults = EditorSettings()
    assert (defaults.guidance_scale, defaults.image_guidance_scale) == (7.5, 1.5)
    assert (defaults.diffusion_steps, defaults.lower_bound, defaults.upper_bound) == (
        20,
        0.02,
        0.98,
    )
    ip2p = InstructPix2PixConfig()
    assert {k: getattr(ip2p, k) for k in defaults.to_dict() if k != "resolution"} == {
        k: v for k, v in defaults.to_dict().items() if k != "resolution"
    }
    assert ip2p.resolution == 512
