"""`edit3d edit --mask-provider package.module:factory`: masks from a user's factory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edit3d.cli import main
from edit3d.editing.turns import TurnSpec
from edit3d.field.testing import make_tiny_scene
from edit3d.segmentation.mask_provider import load_mask_provider

RECEIVED: list[dict[str, object]] = []


def left_half_masks(dataset_root: Path):  # a factory that asks for the dataset only
    RECEIVED.append({"dataset_root": dataset_root})

    def provider(view_name: str, image: np.ndarray, spec: TurnSpec) -> np.ndarray:
        mask = np.zeros(image.shape[:2], np.float32)
        mask[:, : image.shape[1] // 2] = 1.0
        return mask

    return provider


def not_a_provider():
    return 42


def test_the_factory_gets_only_what_it_declares(tmp_path: Path) -> None:
    RECEIVED.clear()
    provider = load_mask_provider(f"{__name__}:left_half_masks", dataset_root=tmp_path,
                                  device="cpu")
    assert [{"dataset_root": tmp_path}] == RECEIVED
    mask = provider("images/a.png", np.zeros((4, 6, 3), np.float32), TurnSpec("x"))
    assert mask[:, :3].min() == 1.0 and mask[:, 3:].max() == 0.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:factory", "cannot import module 'no_such_module'"),
        (f"{__name__}:absent", "has no attribute 'absent'"),
        (f"{__name__}:not_a_provider", "not callable as (view name, image, spec) -> mask"),
        ("no-colon", "must look like 'package.module:Factory'"),
    ],
)
def test_a_spec_that_names_no_provider_is_refused(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="mask provider") as error:
        load_mask_provider(spec, dataset_root=tmp_path)
    assert message in str(error.value)


def test_edit_uses_the_provider_and_records_it(tmp_path: Path, capsys) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    workspace = tmp_path / "ws"
    train = ["train", str(scene.root), "-w", str(workspace), "--preset", "tiny", "--steps", "2"]
    assert main([*train, "--device", "cpu"]) == 0
    RECEIVED.clear()
    edit = ["edit", "-w", str(workspace), "--turn", "paint it", "--editor", "ip2p-tiny",
            "--steps", "2", "--device", "cpu", "--mask-provider", f"{__name__}:left_half_masks"]
    assert main(edit) == 0
    assert [{"dataset_root": scene.root.resolve()}] == RECEIVED
    masks = sorted((workspace / "turns").rglob("masks.npz"))
    assert len(masks) == 1
    with np.load(masks[0]) as data:
        first = data["image_00000"]
    assert first[:, :8].min() == 1.0 and first[:, 8:].max() == 0.0
    capsys.readouterr()
    assert main(["history", "-w", str(workspace)]) == 0
    assert f"masks: provider:{__name__}:left_half_masks" in capsys.readouterr().out
    # a spec that names no provider fails in one line before any pre-render
    failed = main([*edit[:-1], "no_such_module:factory"])
    err = capsys.readouterr().err.strip()
    assert failed == 2 and "\n" not in err and "--mask-provider no_such_module:factory" in err
