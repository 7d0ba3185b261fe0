"""Dataset layouts: nerfstudio (incl. ns-process-data's applied_transform), Blender-synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edit3d.field import field_from_dataset, get_preset
from edit3d.field.testing import make_tiny_scene, ring_views, write_colmap_text_model
from edit3d.scene.dataset import load_dataset, world_c2w_to_nerfstudio


def test_applied_transform_of_ns_process_data(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path, num_views=8, resolution=16)
    meta = json.loads((scene.root / "transforms.json").read_text())
    # ns-process-data writes this for COLMAP captures; poses in the file already carry it.
    meta["applied_transform"] = [[0, 1, 0, 0.5], [1, 0, 0, 0], [0, 0, -1, 2.0]]
    (scene.root / "transforms.json").write_text(json.dumps(meta))
    dataset = load_dataset(scene.root)  # checks itself against nerfstudio's dataparser poses
    ns = dataset.nerfstudio_cameras().camera_to_worlds.numpy()
    ours = [world_c2w_to_nerfstudio(v.c2w, dataset.transform, dataset.scale) for v in dataset.views]
    np.testing.assert_allclose(np.stack(ours), ns, atol=1e-5)
    assert [v.name for v in dataset.views] == sorted(v.name for v in scene.views)


def test_frames_are_keyed_by_file_name_in_nerfstudio_order(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path, num_views=8, resolution=16)
    meta = json.loads((scene.root / "transforms.json").read_text())
    meta["frames"] = meta["frames"][::-1]  # file order must not matter, names do
    (scene.root / "transforms.json").write_text(json.dumps(meta))
    dataset = load_dataset(scene.root)
    assert [v.name for v in dataset.views] == sorted(v.name for v in scene.views)
    by_name = {v.name: v for v in scene.views}
    for view in dataset.views:
        np.testing.assert_allclose(view.c2w, by_name[view.name].c2w)
        np.testing.assert_allclose(dataset.image(view.name), scene.image(view), atol=1 / 255)


def _write_blender_synthetic(root: Path, size: int = 16) -> list:
    views = ring_views(6, size)
    (root / "train").mkdir(parents=True)
    frames = []
    for i, view in enumerate(views):
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., 0] = 200
        rgba[4:12, 4:12, 3] = 255  # opaque square on a transparent background
        Image.fromarray(rgba, "RGBA").save(root / "train" / f"r_{i}.png")
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": view.c2w.tolist()})
    angle = 2 * np.arctan(size / 2 / views[0].intrinsics.fx)
    (root / "transforms_train.json").write_text(
        json.dumps({"camera_angle_x": angle, "frames": frames})
    )
    return views


def test_blender_synthetic(tmp_path: Path) -> None:
    views = _write_blender_synthetic(tmp_path)
    dataset = load_dataset(tmp_path)
    assert dataset.format == "blender" and dataset.views[0].name == "./train/r_0"
    np.testing.assert_allclose(dataset.views[0].intrinsics.fx, views[0].intrinsics.fx)
    np.testing.assert_allclose(dataset.transform, np.eye(4)[:3])
    image = dataset.image("./train/r_0")
    np.testing.assert_allclose(image[0, 0], [1.0, 1.0, 1.0])  # composited over white
    np.testing.assert_allclose(image[8, 8], [200 / 255, 0.0, 0.0], atol=1e-6)
    field = field_from_dataset(dataset, get_preset("tiny"))
    cameras = dataset.nerfstudio_cameras()
    np.testing.assert_allclose(
        field.render(field.views[2]).rgb,
        field.render_nerfstudio_camera(cameras[2:3], view_index=2).rgb,
        atol=1e-5,
    )


def test_unknown_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="transforms"):
        load_dataset(tmp_path)


def test_images_downscale_on_load(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path, num_views=8, resolution=32)
    dataset = load_dataset(scene.root)
    small = dataset.image(scene.views[0].name, max_size=16)
    full = dataset.image(scene.views[0].name)
    assert small.shape == (16, 16, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small, full.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3)), atol=2 / 255)


def test_colmap_sparse_model(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path, num_views=8, resolution=16)
    (scene.root / "transforms.json").unlink()
    write_colmap_text_model(scene.views, scene.root / "sparse" / "0")
    dataset = load_dataset(scene.root)
    assert dataset.format == "colmap"
    by_name = {v.name: v for v in scene.views}
    assert sorted(v.name for v in dataset.views) == sorted(by_name)  # images/<file>
    for view in dataset.views:  # COLMAP's world is the world frame; cameras in OpenGL axes
        np.testing.assert_allclose(view.c2w, by_name[view.name].c2w, atol=1e-5)
        got, want = view.intrinsics, by_name[view.name].intrinsics
        np.testing.assert_allclose(
            [got.fx, got.fy, got.cx, got.cy], [want.fx, want.fy, want.cx, want.cy], rtol=1e-6
        )
        assert (got.width, got.height) == (want.width, want.height)
    field = field_from_dataset(dataset, get_preset("tiny"))
    cameras = dataset.nerfstudio_cameras()
    index = 3
    np.testing.assert_allclose(
        field.render(field.views[index]).rgb,
        field.render_nerfstudio_camera(cameras[index : index + 1], view_index=index).rgb,
        atol=1e-4,
    )


def test_training_size_matches_loaded_images(tmp_path: Path) -> None:
    import dataclasses

    scene = make_tiny_scene(tmp_path, num_views=8, resolution=30)
    config = dataclasses.replace(get_preset("tiny"), max_image_size=16)
    field = field_from_dataset(scene.root, config)
    images = field.dataset_images()
    for view in field.views:
        assert field.training_size(view) == images[view.name].shape[:2] == (16, 16)
