"""A dataset's sparse points (SfM): read in the field frame, as nerfstudio hands them to
splatfacto, and the splat field's initial Gaussians are exactly those points."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edit3d.field import field_from_dataset, get_preset
from edit3d.field.testing import TinyScene, make_tiny_scene, write_colmap_text_model
from edit3d.scene.dataset import load_dataset

TINY_SPLAT = get_preset("tiny", "splatfacto")
COUNT = 60


def _points(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-0.8, 0.8, size=(COUNT, 3)).astype(np.float32)
    return xyz, rng.integers(0, 256, size=(COUNT, 3), dtype=np.uint8)


def _expected_field_points(dataset, xyz: np.ndarray) -> np.ndarray:
    """World (file) points through the dataset's world → field map, in float64."""
    return (xyz.astype(np.float64) @ dataset.transform[:, :3].T + dataset.transform[:, 3]) * (
        dataset.scale
    )


def _write_ascii_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """A point file as ns-process-data writes one (ASCII, float xyz, uint8 colours)."""
    header = [
        "ply", "format ascii 1.0", f"element vertex {len(xyz)}",
        *[f"property float {a}" for a in "xyz"],
        *[f"property uint8 {c}" for c in ("red", "green", "blue")], "end_header",
    ]  # fmt: skip
    rows = [
        f"{x:.8f} {y:.8f} {z:.8f} {r} {g} {b}"
        for (x, y, z), (r, g, b) in zip(xyz, rgb, strict=True)
    ]
    path.write_text("\n".join(header + rows) + "\n")


def _with_ply(tmp_path: Path, **meta_changes) -> tuple[TinyScene, np.ndarray, np.ndarray]:
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    xyz, rgb = _points()
    _write_ascii_ply(scene.root / "sparse_pc.ply", xyz, rgb)
    meta = json.loads((scene.root / "transforms.json").read_text())
    meta.update({"ply_file_path": "sparse_pc.ply", **meta_changes})
    (scene.root / "transforms.json").write_text(json.dumps(meta))
    # the values the file holds (printed with 8 decimals, read back as float32)
    return scene, np.array([[float(f"{v:.8f}") for v in p] for p in xyz], np.float32), rgb


def test_nerfstudio_ply_points_seed_the_splats_in_the_field_frame(tmp_path: Path) -> None:
    scene, xyz, rgb = _with_ply(tmp_path)
    dataset = load_dataset(scene.root)
    assert dataset.points is not None and dataset.points.xyz.dtype == np.float32
    np.testing.assert_allclose(dataset.points.xyz, _expected_field_points(dataset, xyz), atol=1e-6)
    np.testing.assert_array_equal(dataset.points.rgb, rgb)
    assert not np.allclose(dataset.points.xyz, xyz, atol=1e-2)  # a different frame indeed

    field = field_from_dataset(dataset, TINY_SPLAT)
    means = field.model.gauss_params["means"].detach().numpy()
    assert means.tobytes() == dataset.points.xyz.tobytes()
    np.testing.assert_allclose(field.points_to_world(means), xyz, atol=1e-5)
    colours = 0.5 + 0.28209479177387814 * field.gaussians().sh_dc  # degree-0 SH → RGB
    np.testing.assert_allclose(colours, rgb / 255.0, atol=1e-5)


def test_applied_transform_datasets_map_points_as_their_poses(tmp_path: Path) -> None:
    """ns-process-data output: poses and points in the file carry `applied_transform`; both
    go through the same file → field map."""
    applied = [[0, 1, 0, 0.5], [1, 0, 0, 0], [0, 0, -1, 2.0]]
    scene, xyz, _ = _with_ply(tmp_path, applied_transform=applied)
    dataset = load_dataset(scene.root)
    np.testing.assert_allclose(dataset.points.xyz, _expected_field_points(dataset, xyz), atol=1e-6)


def test_without_points_the_splats_start_random(tmp_path: Path) -> None:
    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    dataset = load_dataset(scene.root)
    assert dataset.points is None
    config = dataclasses.replace(TINY_SPLAT, num_random=321)
    field = field_from_dataset(dataset, config)
    means = field.model.gauss_params["means"].detach()
    assert field.num_gaussians == 321
    assert float(means.abs().max()) <= config.random_scale / 2  # the cube of side random_scale


def test_random_init_setting_ignores_the_points(tmp_path: Path) -> None:
    scene, _, _ = _with_ply(tmp_path)
    field = field_from_dataset(scene.root, dataclasses.replace(TINY_SPLAT, random_init=True))
    assert field.num_gaussians == TINY_SPLAT.num_random


def test_colmap_points_are_nerfstudios_points3D(tmp_path: Path) -> None:
    from nerfstudio.data.dataparsers.colmap_dataparser import ColmapDataParserConfig

    scene = make_tiny_scene(tmp_path / "scene", num_views=6, resolution=16)
    (scene.root / "transforms.json").unlink()
    xyz, rgb = _points(1)
    write_colmap_text_model(scene.views, scene.root / "sparse" / "0", points=(xyz, rgb))
    dataset = load_dataset(scene.root)
    theirs = (
        ColmapDataParserConfig(
            data=scene.root, colmap_path=Path("sparse/0"), eval_mode="all", downscale_factor=1
        )
        .setup()
        .get_dataparser_outputs("train")
        .metadata
    )
    assert dataset.points.xyz.tobytes() == theirs["points3D_xyz"].numpy().tobytes()
    assert dataset.points.rgb.tobytes() == theirs["points3D_rgb"].numpy().tobytes()
    np.testing.assert_allclose(dataset.points.xyz, _expected_field_points(dataset, xyz), atol=1e-6)

    field = field_from_dataset(dataset, TINY_SPLAT)
    torch.testing.assert_close(
        field.model.gauss_params["means"].detach(), theirs["points3D_xyz"], rtol=0, atol=0
    )


@pytest.mark.parametrize(
    "ply_file_path, message",
    [
        ("../outside.ply", "must be relative to the dataset folder"),
        ("missing.ply", "names no file"),
        (17, "must be a file name"),
    ],
)
def test_bad_point_files_are_refused(tmp_path: Path, ply_file_path, message: str) -> None:
    (tmp_path / "outside.ply").write_text("ply\nformat ascii 1.0\nend_header\n")
    scene, _, _ = _with_ply(tmp_path, ply_file_path=ply_file_path)
    with pytest.raises(ValueError, match=message):
        load_dataset(scene.root)
