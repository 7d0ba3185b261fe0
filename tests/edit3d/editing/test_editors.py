"""Editor specs: built-in InstructPix2Pix, pipeline-check labelling, editors by import path."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from edit3d.editing.editors import (
    Editor,
    TinyEditorWarning,
    check_edit_result,
    is_pipeline_check,
    load_editor,
)
from edit3d.editing.ip2p import InstructPix2PixConfig, InstructPix2PixEditor

PAINTER_MODULE = """
import numpy as np

class Painter:
    def __init__(self, color=(1.0, 0.0, 0.0)):
        self.color = np.asarray(color, dtype=np.float32)
        self.views = []

    def edit(self, render, condition, instruction, *, view_name, seed=None, cancel=None):
        self.views.append(view_name)
        out = condition.copy()
        out[: out.shape[0] // 2] = self.color
        return out

def make_painter(**kwargs):
    return Painter(**kwargs)

NOT_CALLABLE = 3

def no_edit_method():
    return object()

def broken_factory():
    raise RuntimeError("factory exploded")
"""


@pytest.fixture
def painter_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "edit3d_test_painters"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PAINTER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_import_path_editor_gets_factory_kwargs_and_edits(painter_module: str) -> None:
    editor = load_editor(f"{painter_module}:make_painter", color=(0.0, 0.0, 1.0))
    condition = np.full((6, 4, 3), 0.5, dtype=np.float32)
    edited = editor.edit(condition, condition, "paint", view_name="frame_7.png")
    np.testing.assert_array_equal(edited[:3], np.broadcast_to([0.0, 0.0, 1.0], (3, 4, 3)))
    np.testing.assert_array_equal(edited[3:], condition[3:])
    assert editor.views == ["frame_7.png"]
    assert isinstance(editor, Editor)
    assert not is_pipeline_check(editor)


def test_import_path_accepts_a_class(painter_module: str) -> None:
    editor = load_editor(f"{painter_module}:Painter")
    assert type(editor).__name__ == "Painter"


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("missing_factory", "has no attribute 'missing_factory'"),
        ("NOT_CALLABLE", "is not callable"),
        ("no_edit_method", "no edit\\(\\) method"),
    ],
)
def test_import_path_errors_name_the_spec(
    painter_module: str, attribute: str, message: str
) -> None:
    spec = f"{painter_module}:{attribute}"
    with pytest.raises(ValueError, match=message) as caught:
        load_editor(spec)
    assert spec in str(caught.value)


def test_missing_module_error_names_the_spec() -> None:
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_pkg\.editors'") as caught:
        load_editor("no_such_pkg.editors:Factory")
    assert "'no_such_pkg.editors:Factory'" in str(caught.value)


def test_factory_exceptions_propagate(painter_module: str) -> None:
    with pytest.raises(RuntimeError, match="factory exploded"):
        load_editor(f"{painter_module}:broken_factory")


@pytest.mark.parametrize("spec", ["", "stable-diffusion", "module_only:", ":Factory"])
def test_malformed_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="spec"):
        load_editor(spec)


def test_tiny_ip2p_is_labelled_a_pipeline_check() -> None:
    with pytest.warns(TinyEditorWarning):
        editor = load_editor("ip2p-tiny", diffusion_steps=2)
    assert isinstance(editor, InstructPix2PixEditor)
    assert isinstance(editor, Editor)
    assert is_pipeline_check(editor)
    assert editor.config.diffusion_steps == 2
    assert editor.config.resolution == 64  # tiny default keeps CPU checks fast
    render = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    edited = editor.edit(render, render, "make it snowy", view_name="v.png", seed=0)
    assert edited.shape == render.shape


def test_tiny_ip2p_takes_a_config_and_overrides() -> None:
    config = InstructPix2PixConfig(resolution=32, guidance_scale=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TinyEditorWarning)
        editor = load_editor("ip2p-tiny", config=config, image_guidance_scale=1.2)
    assert editor.config == InstructPix2PixConfig(
        resolution=32, guidance_scale=5.0, image_guidance_scale=1.2
    )


def test_unknown_ip2p_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="guidance"):
        load_editor("ip2p-tiny", guidance=3.0)


def test_check_edit_result_rejects_wrong_shapes_and_clips() -> None:
    render = np.zeros((4, 5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="'painter' returned shape"):
        check_edit_result(np.zeros((5, 4, 3)), render, editor="painter")
    with pytest.raises(ValueError, match="non-finite"):
        check_edit_result(np.full((4, 5, 3), np.nan), render, editor="painter")
    checked = check_edit_result(np.full((4, 5, 3), 1.5), render, editor="painter")
    assert checked.dtype == np.float32 and checked.max() == 1.0


def test_real_ip2p_without_weights_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edit3d.models.registry import ModelNotAvailable, model_path_env_var

    monkeypatch.setenv("EDIT3D_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv(model_path_env_var("instruct-pix2pix"), raising=False)
    with pytest.raises(ModelNotAvailable, match="edit3d models fetch instruct-pix2pix"):
        load_editor("ip2p")


def test_real_ip2p_loads_weights_from_local_path(tmp_path: Path) -> None:
    """The "ip2p" spec goes registry → load_real; tiny weights saved to disk stand in here."""
    from edit3d.models.ip2p import build_tiny

    tiny = build_tiny(seed=3, device="cpu")
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        getattr(tiny, name).save_pretrained(tmp_path / name)
    editor = load_editor("ip2p", local_path=tmp_path, resolution=32, diffusion_steps=3)
    assert not is_pipeline_check(editor)
    reference = InstructPix2PixEditor(tiny, InstructPix2PixConfig(resolution=32, diffusion_steps=3))
    render = np.random.default_rng(1).random((12, 20, 3)).astype(np.float32)
    expected = reference.edit(render, render, "add snow", view_name="v", seed=4)
    actual = editor.edit(render, render, "add snow", view_name="v", seed=4)
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_ip2p_is_registered_with_a_pinned_source() -> None:
    from edit3d.models.registry import get_spec

    spec = get_spec("instruct-pix2pix")
    assert spec.source.repo_id == "timbrooks/instruct-pix2pix"
    assert spec.source.pinned
