"""A dataset's image paths stay inside its folder: no absolute name, no `..`, no symlink out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edit3d.scene.dataset import confined_path, load_dataset
from edit3d.scene.sample import make_sample_scene


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return make_sample_scene(tmp_path_factory.mktemp("scene") / "scene", num_views=24,
                             resolution=32).root


def _copy_with_first_frame(sample: Path, tmp_path: Path, file_path: str) -> Path:
    """A copy of the sample whose first frame names `file_path`; also a real image outside
    the copy at tmp_path/outside.png, so only the check can stop it being read."""
    root = tmp_path / "copy"
    shutil.copytree(sample, root)
    meta = json.loads((root / "transforms.json").read_text())
    first = meta["frames"][0]["file_path"]
    shutil.copy(root / first, tmp_path / "outside.png")
    meta["frames"][0]["file_path"] = file_path
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_image_paths_leaving_the_folder_are_refused(sample, tmp_path, kind) -> None:
    outside = tmp_path / "outside.png"
    name = str(outside) if kind == "absolute" else "../outside.png"
    root = _copy_with_first_frame(sample, tmp_path, name)
    assert outside.is_file()  # loadable: without the check the loader would train on it
    with pytest.raises(ValueError, match=r"file_path .*outside\.png"):
        load_dataset(root)


def test_a_symlink_out_of_the_folder_is_refused(sample, tmp_path) -> None:
    root = _copy_with_first_frame(sample, tmp_path, "images/linked.png")
    (root / "images" / "linked.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ValueError, match="leads outside the dataset folder"):
        load_dataset(root)


def test_paths_inside_the_folder_are_accepted(sample, tmp_path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(sample, root)
    first = root / json.loads((root / "transforms.json").read_text())["frames"][0]["file_path"]
    (root / "store").mkdir()
    first.rename(root / "store" / "first.png")
    first.symlink_to(root / "store" / "first.png")
    assert len(load_dataset(root).views) == 24  # a link that stays inside is fine
    assert confined_path(root, "./images/x.png") == root / "./images/x.png"
    for bad in ("", "/etc/passwd", "images/../../x.png", "C:\\x.png", "..\\x.png"):
        with pytest.raises(ValueError, match=r"file_path|non-empty"):
            confined_path(root, bad)
