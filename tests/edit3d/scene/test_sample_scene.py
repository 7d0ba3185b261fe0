"""The sample scene: deterministic files, and ground truth that agrees with itself.

Cameras are re-derived here from transforms.json with an independent pinhole model, so a
flipped axis, a shifted mask or a wrong depth in the generator shows up as mask pixels whose
unprojected points do not lie on their object.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edit3d.cli import main as cli_main
from edit3d.export.ply import read_ply
from edit3d.scene.cameras import CameraView, Intrinsics
from edit3d.scene.sample import (
    AMBIENT,
    BACKGROUND_COLOR,
    CHECKER_DARK,
    LIGHT_DIRECTION,
    SPARSE_POINTS,
    SPARSE_POINTS_FILE,
    SampleScene,
    look_at,
    make_sample_scene,
)

VIEWS, RES = 24, 48
TOP_LEVEL = ("ground", "red_box", "blue_sphere", "yellow_cylinder", "person")
PERSON_PARTS = ("person_head", "person_hair", "person_torso", "person_legs")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> SampleScene:
    return make_sample_scene(
        tmp_path_factory.mktemp("sample") / "scene", num_views=VIEWS, resolution=RES, seed=0
    )


def _tree_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _pixel_rays(frame: dict, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Unit world rays through every pixel centre: OpenGL camera, row 0 at the top."""
    h, w = meta["h"], meta["w"]
    rows, cols = np.mgrid[0:h, 0:w]
    x = (cols + 0.5 - meta["cx"]) / meta["fl_x"]
    y = -(rows + 0.5 - meta["cy"]) / meta["fl_y"]
    camera = np.stack([x, y, -np.ones_like(x)], axis=-1)
    c2w = np.asarray(frame["transform_matrix"])
    world = camera @ c2w[:3, :3].T
    world /= np.linalg.norm(world, axis=-1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], world.shape), world


def test_same_seed_same_bytes_other_seed_other_scene(tmp_path: Path) -> None:
    a = make_sample_scene(tmp_path / "a", num_views=24, resolution=32, seed=3)
    b = make_sample_scene(tmp_path / "b", num_views=24, resolution=32, seed=3)
    c = make_sample_scene(tmp_path / "c", num_views=24, resolution=32, seed=4)
    files_a, files_b, files_c = (_tree_bytes(s.root) for s in (a, b, c))
    assert files_a == files_b
    assert files_a.keys() == files_c.keys()
    assert files_a["images/frame_00000.png"] != files_c["images/frame_00000.png"]
    assert files_a["objects.json"] != files_c["objects.json"]


def test_transforms_json_describes_the_views(scene: SampleScene) -> None:
    meta = json.loads((scene.root / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV"
    assert (meta["w"], meta["h"]) == (RES, RES)
    assert len(meta["frames"]) == VIEWS == len(scene.views)
    for frame, view in zip(meta["frames"], scene.views, strict=True):
        assert frame["file_path"] == view.name
        assert (scene.root / frame["file_path"]).is_file()
        c2w = np.asarray(frame["transform_matrix"])
        np.testing.assert_allclose(c2w, view.c2w)
        np.testing.assert_allclose(c2w[:3, :3].T @ c2w[:3, :3], np.eye(3), atol=1e-9)
        assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)
        # Every camera looks at the scene, from above the ground: -Z points down-inwards.
        assert c2w[2, 3] > 0.5 and c2w[2, 2] > 0
    positions = np.array([v.position for v in scene.views])
    # Not centred, not unit scale: the dataparser transform must matter.
    assert np.linalg.norm(positions.mean(axis=0)[:2] - [0, 0]) > 1.5


def test_mask_pixels_unproject_onto_their_object(scene: SampleScene) -> None:
    meta = json.loads((scene.root / "transforms.json").read_text())
    leaves = [o.id for o in scene.objects if not o.is_group]
    checked = 0
    for frame in meta["frames"][::3]:
        origins, dirs = _pixel_rays(frame, meta)
        depth = scene.depth(frame["file_path"])
        for object_id in leaves:
            mask = scene.object_mask(object_id, frame["file_path"])
            points = origins[mask] + dirs[mask] * depth[mask][:, None].astype(np.float64)
            if len(points) == 0:
                continue
            # float32 depth on disk: ~1e-6 relative error at a few metres.
            assert scene.object_at(points, tol=1e-4) == [object_id] * len(points), object_id
            assert np.all(scene.object_distance(object_id, points) < 1e-4)
            checked += len(points)
        sky = ~np.any([scene.object_mask(o, frame["file_path"]) for o in TOP_LEVEL], axis=0)
        assert np.all(np.isinf(depth[sky])) and np.all(np.isfinite(depth[~sky]))
    assert checked > 0.5 * RES * RES * len(meta["frames"][::3])


def test_top_level_masks_are_disjoint_and_sky_is_background(scene: SampleScene) -> None:
    for view in scene.views:
        masks = {o: scene.object_mask(o, view.name) for o in TOP_LEVEL}
        for a, b in itertools.combinations(TOP_LEVEL, 2):
            assert not np.any(masks[a] & masks[b]), (view.name, a, b)
        sky = ~np.any(list(masks.values()), axis=0)
        assert sky.any()
        expected = np.round(np.asarray(BACKGROUND_COLOR) * 255) / 255
        sky_pixels = scene.image(view.name)[sky]
        np.testing.assert_allclose(sky_pixels, np.tile(expected, (len(sky_pixels), 1)), atol=1e-6)


def test_person_parts_partition_the_person(scene: SampleScene) -> None:
    assert sorted(scene.parts("person")) == sorted(PERSON_PARTS)
    for view in scene.views:
        parts = [scene.object_mask(p, view.name) for p in PERSON_PARTS]
        np.testing.assert_array_equal(np.any(parts, axis=0), scene.object_mask("person", view.name))
        assert np.sum(parts, axis=0).max() <= 1


def test_every_object_is_seen_in_most_views(scene: SampleScene) -> None:
    min_pixels = 6
    for object_id in (*TOP_LEVEL, *PERSON_PARTS):
        seen = sum(scene.object_mask(object_id, v.name).sum() >= min_pixels for v in scene.views)
        share = 0.9 if object_id in TOP_LEVEL else 0.6
        assert seen >= share * len(scene.views), (object_id, seen)


def test_image_colours_are_object_colours_under_lambert_shading(scene: SampleScene) -> None:
    for view in scene.views[::4]:
        image = scene.image(view.name).astype(np.float64)
        for obj in scene.objects:
            if obj.is_group:
                continue
            pixels = image[scene.object_mask(obj.id, view.name)]
            color = scene.object_color(obj.id).astype(np.float64)
            shade = pixels @ color / (color @ color)  # least-squares brightness per pixel
            residual = np.abs(pixels - shade[:, None] * color[None])
            assert residual.max() <= 1.5 / 255, obj.id
            low = AMBIENT * (CHECKER_DARK if obj.id == "ground" else 1.0)
            assert shade.min() >= low - 0.01 and shade.max() <= 1.01, obj.id


def test_sparse_points_lie_on_seen_surfaces_with_their_image_colours(
    scene: SampleScene,
) -> None:
    """What SfM would leave: points on surfaces the cameras see, coloured as the images show
    them (albedo times the Lambert factor, in 8 bits), none in the sky."""
    meta = json.loads((scene.root / "transforms.json").read_text())
    vertex = read_ply(scene.root / meta["ply_file_path"])["vertex"]
    points = np.stack([vertex[a] for a in "xyz"], axis=1).astype(np.float64)
    colours = np.stack([vertex[c] for c in ("red", "green", "blue")], axis=1) / 255.0
    assert meta["ply_file_path"] == SPARSE_POINTS_FILE and len(points) == SPARSE_POINTS
    assert len(np.unique(points, axis=0)) == len(points)
    assert scene.surface_distance(points).max() < 1e-5  # float32 positions
    owners = scene.object_at(points, tol=1e-4)
    assert None not in owners
    seen = {owner: owners.count(owner) for owner in set(owners)}
    assert set(seen) == {o.id for o in scene.objects if not o.is_group}, seen
    albedo = np.stack([scene.object_color(owner) for owner in owners]).astype(np.float64)
    shade = np.sum(colours * albedo, axis=1) / np.sum(albedo * albedo, axis=1)
    assert np.abs(colours - shade[:, None] * albedo).max() <= 1.5 / 255
    assert shade.min() >= AMBIENT * CHECKER_DARK - 0.01 and shade.max() <= 1.01
    assert _seen_by_some_view(scene, points).all()  # no hidden surface (e.g. a box bottom)


def _seen_by_some_view(scene: SampleScene, points: np.ndarray) -> np.ndarray:
    """[N] bool: the point is the first hit of some view's pixel ray (its ground-truth depth
    there is the point's distance from that camera)."""
    seen = np.zeros(len(points), bool)
    for view in scene.views:
        k, c2w = view.intrinsics, view.c2w
        local = (points - c2w[:3, 3]) @ c2w[:3, :3]  # OpenGL camera axes
        in_front = local[:, 2] < 0
        depth = np.where(in_front, -local[:, 2], 1.0)
        u = k.fx * local[:, 0] / depth + k.cx
        v = -k.fy * local[:, 1] / depth + k.cy
        col, row = np.floor(u).astype(int), np.floor(v).astype(int)
        inside = in_front & (col >= 0) & (col < k.width) & (row >= 0) & (row < k.height)
        truth = np.full(len(points), np.inf)
        truth[inside] = scene.depth(view.name)[row[inside], col[inside]]
        distance = np.linalg.norm(points - c2w[:3, 3], axis=1)
        seen |= inside & (np.abs(truth - distance) < 1e-4)
    return seen


def test_without_sparse_points_no_file_is_named(tmp_path: Path) -> None:
    scene = make_sample_scene(tmp_path / "s", num_views=24, resolution=32, num_points=0)
    assert "ply_file_path" not in json.loads((scene.root / "transforms.json").read_text())
    assert not (scene.root / SPARSE_POINTS_FILE).exists()


def test_render_any_pose_matches_the_analytic_truth(scene: SampleScene) -> None:
    sphere = scene.get("blue_sphere").primitives[0].params
    center, radius = np.asarray(sphere["center"]), sphere["radius"]
    eye = center + np.array([0.0, 0.0, 3.0])
    c2w = look_at(eye, center, up=(0.0, 1.0, 0.0))
    view = CameraView("top", c2w, Intrinsics(40.0, 40.0, 16.5, 16.5, 33, 33))
    result = scene.trace(view)
    index = scene.objects.index(scene.get("blue_sphere"))
    assert result.object_index[16, 16] == index
    assert result.depth[16, 16] == pytest.approx(3.0 - radius, abs=1e-5)
    light = np.asarray(LIGHT_DIRECTION) / np.linalg.norm(LIGHT_DIRECTION)
    expected = scene.object_color("blue_sphere") * (AMBIENT + (1 - AMBIENT) * light[2])
    np.testing.assert_allclose(result.image[16, 16], expected, atol=1e-5)
    image, ids = scene.render_view(view)
    np.testing.assert_array_equal(ids, result.object_index)
    np.testing.assert_array_equal(image, result.image)
    # The sphere's silhouette is a disc: radius r at distance 3 from its centre.
    apparent = 40.0 * math.tan(math.asin(radius / 3.0))
    area = (ids == index).sum()
    assert area == pytest.approx(math.pi * apparent**2, rel=0.15)


def test_dataset_view_renders_reproduce_the_stored_images(scene: SampleScene) -> None:
    view = scene.views[5]
    image, ids = scene.render_view(view)
    np.testing.assert_allclose(image, scene.image(view.name), atol=0.5 / 255 + 1e-6)
    index = scene.objects.index(scene.get("red_box"))
    np.testing.assert_array_equal(ids == index, scene.object_mask("red_box", view.name))


def test_surface_distance_and_object_at(scene: SampleScene) -> None:
    sphere = scene.get("blue_sphere").primitives[0].params
    center, radius = np.asarray(sphere["center"]), sphere["radius"]
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(50, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    on_sphere = center + radius * directions
    on_sphere = on_sphere[on_sphere[:, 2] > 0.01]  # the part above the ground
    np.testing.assert_allclose(scene.surface_distance(on_sphere), 0.0, atol=1e-9)
    assert scene.object_at(on_sphere, tol=1e-6) == ["blue_sphere"] * len(on_sphere)
    above = center + np.array([0.0, 0.0, radius + 5.0])
    assert scene.object_distance("blue_sphere", above[None])[0] == pytest.approx(5.0)
    # The nearest surface to that point is the person's hair, ~4.3 m away.
    assert 3.5 < scene.surface_distance(above[None])[0] < 5.0
    assert scene.object_at(above[None]) == [None]
    box = scene.get("red_box").primitives[0].params
    top_of_box = np.asarray(box["center"]) + np.array([0.0, 0.0, box["half"][2]])
    assert scene.object_at(top_of_box[None], tol=1e-9) == ["red_box"]
    ground_point = np.array([2.0, -1.0, 0.0])  # middle of the plate, between the objects
    assert scene.object_at(ground_point[None], tol=1e-9) == ["ground"]
    with pytest.raises(ValueError, match="points_world"):
        scene.surface_distance(np.zeros(3))


def test_load_round_trips_and_accepts_short_names(scene: SampleScene) -> None:
    loaded = SampleScene.load(scene.root)
    assert [o.to_json() for o in loaded.objects] == [o.to_json() for o in scene.objects]
    for a, b in zip(loaded.views, scene.views, strict=True):
        assert a.name == b.name and a.intrinsics == b.intrinsics
        np.testing.assert_array_equal(a.c2w, b.c2w)
    name = scene.views[2].name
    np.testing.assert_array_equal(loaded.image("frame_00002.png"), scene.image(name))
    np.testing.assert_array_equal(
        loaded.object_mask("person", "frame_00002"), scene.object_mask("person", name)
    )
    assert loaded.top_level("person_hair") == "person"
    with pytest.raises(ValueError, match="object_id"):
        loaded.object_mask("dragon", name)


def test_nerfstudio_reads_the_dataset_with_a_nontrivial_transform(scene: SampleScene) -> None:
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    parser = NerfstudioDataParserConfig(data=scene.root, train_split_fraction=1.0).setup()
    outputs = parser.get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == VIEWS
    transform = outputs.dataparser_transform.numpy().astype(np.float64)
    scale = float(outputs.dataparser_scale)
    assert np.linalg.norm(transform[:3, 3]) > 1.0 and not math.isclose(scale, 1.0, rel_tol=0.1)
    poses = outputs.cameras.camera_to_worlds.numpy().astype(np.float64)
    by_name = {v.name: v for v in scene.views}
    for path, pose in zip(outputs.image_filenames, poses, strict=True):
        c2w = by_name[str(Path(path).relative_to(scene.root))].c2w
        expected = transform @ c2w
        np.testing.assert_allclose(pose[:3, :3], expected[:3, :3], atol=1e-5)
        np.testing.assert_allclose(pose[:3, 3], expected[:3, 3] * scale, atol=1e-5)


def test_cli_writes_a_scene(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["sample-scene", str(out), "--views", "24", "--resolution", "32", "--points", "100"]
    assert cli_main(args) == 0
    assert "24 views" in capsys.readouterr().out
    meta = json.loads((out / "transforms.json").read_text())
    assert len(read_ply(out / meta["ply_file_path"])["vertex"]["x"]) == 100
    frames = meta["frames"]
    assert len(frames) == 24
    assert Image.open(out / frames[0]["file_path"]).size == (32, 32)
    assert len(list((out / "masks" / "person").glob("*.png"))) == 24


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_views": 10}, "num_views"),
        ({"resolution": 1024}, "resolution"),
        ({"resolution": 16}, "resolution"),
        ({"num_points": -1}, "num_points"),
    ],
)
def test_rejects_out_of_range_arguments(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make_sample_scene(tmp_path, **kwargs)


def test_rewriting_replaces_an_earlier_scene_but_not_other_folders(tmp_path: Path) -> None:
    make_sample_scene(tmp_path / "s", num_views=30, resolution=32)
    rewritten = make_sample_scene(tmp_path / "s", num_views=24, resolution=32)
    assert len(list((rewritten.root / "images").iterdir())) == 24
    assert len(list((rewritten.root / "masks" / "ground").iterdir())) == 24
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="out_dir"):
        make_sample_scene(tmp_path / "other", num_views=24, resolution=32)
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
