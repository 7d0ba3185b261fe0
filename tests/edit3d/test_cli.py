"""The command line as a user meets it: help, version, and every expected failure as one
line naming the problem and the fix, exit 2, no traceback (`--debug` shows it)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest

from edit3d import __version__
from edit3d.cli import build_parser, main
from edit3d.cli_options import (
    CliError,
    ctrl_c_cancels,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from edit3d.field.testing import make_tiny_scene

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(workspace, dataset, a view name): a tiny base trained two iterations."""
    root = tmp_path_factory.mktemp("cli")
    scene = make_tiny_scene(root / "scene", num_views=6, resolution=16)
    workspace = root / "ws"
    argv = ["train", str(scene.root), "-w", str(workspace), "--preset", "tiny", "--steps", "2"]
    assert main([*argv, "--device", "cpu"]) == 0
    return workspace, scene.root, scene.views[0].name


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDIT3D_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "no-hf"))
    for key in list(os.environ):
        if key.startswith("EDIT3D_MODEL_PATH_"):
            monkeypatch.delenv(key)


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """Run `edit3d argv`; it must exit 2 with one line on stderr holding every `expected`."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    for text in expected:
        assert text in err, (text, err)
    return err


def test_missing_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    for command in (["history"], ["timings"], ["checkout", "base"], ["render", "--out", "x"]):
        _fails([*command, "-w", str(missing)], capsys, str(missing), "edit3d train DATA -w")


def test_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", str(tmp_path / "no-data"), "-w", str(tmp_path / "ws"), "--device", "cpu"]
    _fails(argv, capsys, "dataset folder", "does not exist")
    assert not (tmp_path / "ws").exists()  # nothing was created for a bad input


def test_train_refuses_another_dataset(trained, tmp_path: Path, capsys) -> None:
    workspace, _, _ = trained
    other = make_tiny_scene(tmp_path / "other", num_views=6, resolution=16).root
    _fails(["train", str(other), "-w", str(workspace)], capsys, "was made for dataset", "new -w")


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_cuda_requested_without_a_gpu(trained, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, _, _ = trained
    argv = ["render", "-w", str(workspace), "--out", "x", "--device", "cuda"]
    _fails(argv, capsys, "no CUDA GPU", "leave --device out")


def test_missing_weights_are_named_before_any_work(
    trained, no_weights, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace, _, _ = trained
    before = json.loads((workspace / "workspace.json").read_text())["turns"]
    edit = ["edit", "-w", str(workspace), "--turn", "red", "--editor", "ip2p-tiny"]
    _fails([*edit, "--edit-query", "cube"], capsys, "blip-caption-large", "edit3d models fetch")
    _fails([*edit, "--edit-query", "cube", "--caption", "a cube"], capsys, "blip-itm-large-coco")
    _fails(["edit", "-w", str(workspace), "--turn", "red"], capsys, "'instruct-pix2pix'")
    _fails(["refine", "-w", str(workspace)], capsys, "'realesrgan-x4plus'", "models fetch")
    argv = ["eval", "clip", "-w", str(workspace), "--captions", "a"]
    _fails(argv, capsys, "'clip-vit-l14'", "EDIT3D_MODEL_PATH_CLIP_VIT_L14")
    # No node was started: the failures came before the first expensive step.
    assert json.loads((workspace / "workspace.json").read_text())["turns"] == before


def test_bad_camera_file(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, _, _ = trained
    render = ["render", "-w", str(workspace), "--out", str(tmp_path / "out")]
    bad = tmp_path / "camera.json"
    bad.write_text("{not json")
    _fails([*render, "--camera", str(bad)], capsys, "--camera", "not JSON", "c2w (4x4)")
    bad.write_text(json.dumps({"c2w": [[1, 0, 0, 0]] * 4, "fx": 10}))
    _fails([*render, "--camera", str(bad)], capsys, "missing fy, cx, cy, width, height")
    _fails([*render, "--camera", str(tmp_path / "absent.json")], capsys, "absent.json")


def test_render_from_a_camera_file(trained, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    workspace, _, _ = trained
    camera = {"c2w": np.eye(4).tolist(), "fx": 20, "fy": 20, "cx": 10, "cy": 6}
    cameras = [{**camera, "width": 20, "height": 12, "name": "front"}, {**camera, "width": 8,
               "height": 8}]  # fmt: skip
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps(cameras))
    assert main(["render", "-w", str(workspace), "--out", str(tmp_path / "o"), "--camera",
                 str(path), "--device", "cpu"]) == 0  # fmt: skip
    assert np.asarray(Image.open(tmp_path / "o" / "front.png")).shape == (12, 20, 3)
    assert np.asarray(Image.open(tmp_path / "o" / "camera_001.png")).shape == (8, 8, 3)


@pytest.mark.parametrize("value", ["0", "-5", "wide"])
def test_render_size_must_be_positive(trained, value: str, capsys) -> None:
    workspace, _, _ = trained
    argv = ["render", "-w", str(workspace), "--out", "x", "--width", value]
    _fails(argv, capsys, "--width", value, "edit3d render --help")


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (positive_int, "3", 3),
        (positive_int, "0", "must be at least 1, got 0"),
        (positive_int, "2.5", "must be a whole number, got '2.5'"),
        (non_negative_int, "0", 0),
        (non_negative_int, "-1", "must be 0 or more, got -1"),
        (positive_float, "1e-3", 1e-3),
        (positive_float, "inf", "must be greater than 0, got inf"),
        (positive_float, "0", "must be greater than 0, got 0"),
        (fraction, "0.25", 0.25),
        (fraction, "1.5", "must be between 0 and 1, got 1.5"),
        (fraction, "half", "must be a number, got 'half'"),
    ],
)
def test_number_options_accept_their_range_and_name_what_was_given(
    parse: Any, text: str, expected: object
) -> None:
    if isinstance(expected, str):
        with pytest.raises(argparse.ArgumentTypeError) as error:
            parse(text)
        assert str(error.value) == expected
    else:
        assert parse(text) == expected and type(parse(text)) is type(expected)


def test_unknown_view_lists_the_valid_form(trained, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, _, view = trained
    argv = ["render", "-w", str(workspace), "--out", "x", "--views", "frame_00000.png"]
    _fails([*argv, "--device", "cpu"], capsys, "'frame_00000.png' is not a view", view)


def test_unknown_editor(trained, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, _, _ = trained
    edit = ["edit", "-w", str(workspace), "--turn", "x", "--device", "cpu", "--editor"]
    _fails([*edit, "dall-e"], capsys, "--editor dall-e", "package.module:Factory")
    _fails([*edit, "no_such_module:Editor"], capsys, "--editor no_such_module:Editor")


def test_unknown_node(trained, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, _, _ = trained
    _fails(["checkout", "-w", str(workspace), "turn-9999"], capsys, "turn-9999", "one of: base")
    edit = ["edit", "-w", str(workspace), "--turn", "x", "--editor", "ip2p-tiny"]
    _fails([*edit, "--parent", "turn-9999"], capsys, "--parent 'turn-9999'")


def test_mask_folder_must_cover_every_view(trained, tmp_path: Path, capsys) -> None:
    workspace, _, view = trained
    masks = tmp_path / "masks"
    masks.mkdir()
    edit = ["edit", "-w", str(workspace), "--turn", "x", "--editor", "ip2p-tiny", "--device"]
    _fails([*edit, "cpu", "--masks", str(masks)], capsys, "no mask for 6 of 6 views",
           f"{Path(view).stem}.png")  # fmt: skip


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="does not exist"):
        main(["--debug", "history", "-w", str(tmp_path / "nowhere")])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"edit3d {__version__}"


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _subparsers(child)
    return found


def test_every_option_has_help_and_shows_its_default() -> None:
    for parser in _subparsers(build_parser()):
        help_text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"{parser.prog} {name} has no help"
            unset = action.default is None or action.default is False
            if action.option_strings and not unset and action.default not in ([], "==SUPPRESS=="):
                shown = f"default: {action.default}" in help_text or "default" in action.help
                assert shown, f"{parser.prog} {name}: default {action.default!r} not shown"


def test_preset_choices_are_every_backends_presets() -> None:
    from edit3d.field import backend_names, get_backend

    train = next(p for p in _subparsers(build_parser()) if p.prog.endswith(" train"))
    preset = next(a for a in train._actions if a.dest == "preset")
    for backend in backend_names():
        assert sorted(preset.choices) == sorted(get_backend(backend).presets)
        assert preset.default in get_backend(backend).presets


def test_history_shows_queries_and_imports_no_torch(trained, tmp_path: Path) -> None:
    workspace, _, _ = trained
    copy = tmp_path / "ws"
    data = json.loads((workspace / "workspace.json").read_text())
    data["turns"].append({"id": "turn-0001", "parent": "base", "kind": "edit",
                          "status": "finished", "timings": {"total_s": 3.0}, "spec": {
                              "instruction": "make the cube red", "mode": "edit3d",
                              "edit_queries": ["cube"], "keep_queries": ["floor"],
                              "segmentation": "adss-tiny"}})  # fmt: skip
    copy.mkdir()
    (copy / "workspace.json").write_text(json.dumps(data))
    script = (
        "import sys; from edit3d.cli import main; code = main(['history', '-w', sys.argv[1]]);"
        "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(code)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script, str(copy)], env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[-1] == "no torch"
    turn = next(line for line in lines if "turn-0001" in line)
    for text in ("'make the cube red'", "edit: cube", "keep: floor", "masks: adss-tiny"):
        assert text in turn, turn


def test_timings_prints_each_phase(trained, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, _, _ = trained
    assert main(["timings", "-w", str(workspace)]) == 0
    out = capsys.readouterr().out
    split = out.split("Seconds per step of each node")[1]
    base = next(line for line in split.splitlines() if line.startswith("base"))
    assert "train " in base and "load " in base


def test_first_ctrl_c_cancels_the_second_aborts() -> None:
    with ctrl_c_cancels() as token:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert token.cancelled
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)


def test_ctrl_c_during_train_saves_a_checkpoint(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    workspace = tmp_path / "ws"
    argv = ["train", str(scene.root), "-w", str(workspace), "--preset", "tiny", "--steps",
            "100000", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "edit3d.cli", *argv], env=env,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (workspace / "base").is_dir() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(8)  # into the training loop
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "cancelling after the current step" in err and "Traceback" not in err
    record = json.loads((workspace / "workspace.json").read_text())["turns"][0]
    assert record["status"] == "cancelled"
    assert (workspace / record["paths"]["checkpoint"]).is_file()


# --- the field backend, chosen when a workspace is made -------------------------------------


@dataclasses.dataclass(frozen=True)
class _OtherSettings:
    backend: str = "other"

    def to_dict(self) -> dict:
        return {"backend": self.backend}


@pytest.fixture
def other_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second registered backend (settings only: nothing here builds its field)."""
    from edit3d.field import registry

    registry.backend_names()  # the built-in backends first, so they are not re-added later
    backend = registry.FieldBackend(
        name="other", checkpoint_format="other-v1", config_from_dict=lambda d: _OtherSettings(),
        presets={"tiny": _OtherSettings()}, from_dataset=None, from_state=None,  # type: ignore[arg-type]
    )
    monkeypatch.setitem(registry._BACKENDS, "other", backend)


def test_train_backend_is_recorded_with_the_workspace(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    argv = ["train", str(scene.root), "-w", str(tmp_path / "ws"), "--preset", "tiny",
            "--steps", "1", "--backend", "nerfacto", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((tmp_path / "ws" / "workspace.json").read_text())["backend"] == "nerfacto"


def test_a_chosen_backend_makes_the_workspace_with_its_own_preset(other_backend, tmp_path):
    from edit3d.workspace import Workspace

    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    workspace = Workspace.create(tmp_path / "ws", dataset=scene.root, preset="tiny",
                                 backend="other")  # fmt: skip
    assert workspace.backend == "other"
    assert json.loads((tmp_path / "ws" / "workspace.json").read_text())["config"] == {
        "backend": "other"
    }


def test_unknown_backend_is_refused_naming_the_registered_ones(tmp_path: Path, capsys) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    argv = ["train", str(scene.root), "-w", str(tmp_path / "ws"), "--backend", "nerf-o-matic"]
    _fails(argv, capsys, "--backend must be one of", "'nerfacto'", "'nerf-o-matic'")
    assert not (tmp_path / "ws").exists()


def test_a_workspace_keeps_its_backend(trained, other_backend, capsys) -> None:
    workspace, _, _ = trained
    argv = ["train", "-w", str(workspace), "--backend", "other"]
    _fails(argv, capsys, "uses the nerfacto backend, not other", "drop --backend")


def test_an_ns_train_run_decides_its_own_backend(tmp_path: Path, capsys) -> None:
    run = tmp_path / "config.yml"
    run.write_text("")
    argv = ["train", "-w", str(tmp_path / "ws"), "--nerfstudio-run", str(run),
            "--backend", "nerfacto"]  # fmt: skip
    _fails(argv, capsys, "an ns-train run's model decides the backend", "drop --backend")
