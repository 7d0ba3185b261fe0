"""Gaussian splats carried from a field's frame into the world frame, written as a 3DGS PLY."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from gsplat.cuda._torch_impl import _eval_sh_bases_fast, _spherical_harmonics
from plyfile import PlyData

from edit3d import cli
from edit3d.export import commands
from edit3d.export.geometry import GaussianSplats
from edit3d.export.ply import gaussian_splat_properties, read_gaussian_splat_ply
from edit3d.export.splats import (
    field_to_world_matrix,
    quat_from_matrix,
    sh_basis,
    splats_to_world,
    world_gaussians,
)
from edit3d.field import backend_names, field_from_dataset, get_preset
from edit3d.field.testing import make_tiny_scene


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _matrix_from_quat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def _covariance(quat: np.ndarray, scales_log: np.ndarray) -> np.ndarray:
    r = _matrix_from_quat(quat) @ np.diag(np.exp(scales_log.astype(np.float64)))
    return r @ r.T


def _similarity(rotation: np.ndarray, scale: float, translation) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = scale * rotation
    m[:3, 3] = translation
    return m


def _splats(n: int = 4, degree: int = 3, seed: int = 0) -> GaussianSplats:
    rng = np.random.default_rng(seed)
    return GaussianSplats(
        means=rng.normal(size=(n, 3)),
        scales_log=np.log(rng.uniform(0.05, 0.4, size=(n, 3))),
        quats_wxyz=rng.normal(size=(n, 4)) * 3.0,  # unnormalised, as splatfacto stores them
        opacities_logit=rng.normal(size=n),
        sh_dc=rng.normal(size=(n, 3)),
        sh_rest=rng.normal(size=(n, (degree + 1) ** 2 - 1, 3)),
    )


TURN = _rotation([0.3, -1.0, 0.5], 1.1)
MIRROR = np.diag([1.0, -1.0, 1.0]) @ _rotation([1.0, 0.2, 0.0], 0.7)


def test_sh_basis_matches_the_renderers_reference_basis():
    dirs = _rotation([1, 2, 3], 0.4) @ np.random.default_rng(1).normal(size=(3, 20))
    dirs = (dirs / np.linalg.norm(dirs, axis=0)).T
    reference = _eval_sh_bases_fast(16, torch.from_numpy(dirs)).numpy()
    ours = np.concatenate([sh_basis(level, dirs) for level in (1, 2, 3)], axis=1)
    np.testing.assert_allclose(ours, reference[:, 1:], atol=1e-12)


@pytest.mark.parametrize("rotation", [TURN, MIRROR], ids=["rotation", "reflection"])
def test_known_gaussian_lands_where_expected_after_ply_round_trip(tmp_path, rotation):
    splats = GaussianSplats(
        means=[[0.5, -0.25, 1.0]],
        scales_log=np.log([[0.1, 0.2, 0.4]]),
        quats_wxyz=[quat_from_matrix(_rotation([0, 0, 1], np.pi / 6)) * 2.0],
        opacities_logit=[0.3],
        sh_dc=[[0.1, 0.2, 0.3]],
        sh_rest=np.zeros((1, 15, 3)),
    )
    scale, translation = 2.5, np.array([1.0, -2.0, 0.5])
    world = splats_to_world(splats, _similarity(rotation, scale, translation))
    path = tmp_path / "splats.ply"
    from edit3d.export.files import write_geometry

    write_geometry(path, world)
    back = read_gaussian_splat_ply(path)

    np.testing.assert_allclose(
        back.means[0], scale * rotation @ [0.5, -0.25, 1.0] + translation, atol=1e-5
    )
    a = scale * rotation
    expected = a @ _covariance(splats.quats_wxyz[0], splats.scales_log[0]) @ a.T
    got = _covariance(back.quats_wxyz[0], back.scales_log[0])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.exp(back.scales_log[0]), scale * np.array([0.1, 0.2, 0.4]),
                               rtol=1e-5)  # fmt: skip
    assert np.linalg.norm(back.quats_wxyz[0]) == pytest.approx(1.0, abs=1e-6)
    assert back.opacities_logit[0] == pytest.approx(0.3)
    np.testing.assert_allclose(back.sh_dc[0], [0.1, 0.2, 0.3], atol=1e-7)


@pytest.mark.parametrize("degree", [1, 2, 3])
@pytest.mark.parametrize("rotation", [TURN, MIRROR], ids=["rotation", "reflection"])
def test_view_dependent_colour_follows_the_rotation(degree, rotation):
    """The colour the renderer shows along a world direction d equals the field's colour along
    the same direction seen in the field frame (Qᵀ d)."""
    splats = _splats(n=5, degree=degree)
    world = splats_to_world(splats, _similarity(rotation, 0.7, [0.0, 1.0, 2.0]))
    dirs = np.random.default_rng(3).normal(size=(5, 3))

    def colour(s: GaussianSplats, d: np.ndarray) -> np.ndarray:
        coeffs = np.concatenate([s.sh_dc[:, None], s.sh_rest], axis=1).astype(np.float64)
        return _spherical_harmonics(degree, torch.from_numpy(d), torch.from_numpy(coeffs)).numpy()

    np.testing.assert_allclose(
        colour(world, dirs), colour(splats, dirs @ rotation), atol=2e-5
    )
    assert not np.allclose(world.sh_rest, splats.sh_rest, atol=1e-3)  # it did rotate


def test_plyfile_reads_the_reference_property_names_in_order(tmp_path):
    world = splats_to_world(_splats(n=3, degree=3), _similarity(TURN, 1.5, [0, 0, 0]))
    from edit3d.export.files import write_geometry

    path = write_geometry(tmp_path / "s.ply", world)
    vertex = PlyData.read(str(path))["vertex"]
    names = [p.name for p in vertex.properties]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(45)]
    expected += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert names == expected == gaussian_splat_properties(15)
    assert all(p.val_dtype == "f4" for p in vertex.properties)
    # f_rest is channel-major: all red coefficients, then green, then blue
    np.testing.assert_allclose(vertex["f_rest_0"], world.sh_rest[:, 0, 0])
    np.testing.assert_allclose(vertex["f_rest_1"], world.sh_rest[:, 1, 0])
    np.testing.assert_allclose(vertex["f_rest_15"], world.sh_rest[:, 0, 1])
    np.testing.assert_allclose(vertex["f_rest_44"], world.sh_rest[:, 14, 2])
    np.testing.assert_allclose(vertex["x"], world.means[:, 0])


def test_non_similarity_transform_is_refused():
    squash = np.diag([1.0, 2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="field_to_world must be a similarity"):
        splats_to_world(_splats(), squash)


def test_sh_degree_above_three_is_refused():
    with pytest.raises(ValueError, match="sh_rest: SH degree must be at most 3"):
        splats_to_world(_splats(degree=4), np.eye(4))


@dataclass
class FakeField:
    """A field in its own frame p_field = s·(R p_world + t), holding known Gaussians."""

    splats: GaussianSplats | None
    backend: str = "fake"

    def __post_init__(self) -> None:
        self.world_to_field = np.linalg.inv(_similarity(TURN, 2.0, [0.1, 0.2, 0.3]))

    def points_to_world(self, points_field: np.ndarray) -> np.ndarray:
        m = np.linalg.inv(self.world_to_field)
        return np.asarray(points_field) @ m[:3, :3].T + m[:3, 3]

    def gaussians(self) -> GaussianSplats | None:
        return self.splats


def test_field_to_world_matrix_is_read_through_points_to_world():
    field = FakeField(None)
    expected = _similarity(TURN, 2.0, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(field_to_world_matrix(field), expected)


def test_world_gaussians_moves_the_fields_gaussians_into_the_world_frame():
    splats = _splats(n=6)
    world = world_gaussians(FakeField(splats))
    np.testing.assert_allclose(world.means, 2.0 * splats.means @ TURN.T + [0.1, 0.2, 0.3],
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(world.scales_log, splats.scales_log + np.log(2.0), atol=1e-6)


class NoGaussians:
    backend = "nerfacto"


@pytest.mark.parametrize("field", [FakeField(None, "nerfacto"), NoGaussians()])
def test_a_field_without_gaussians_names_what_to_export_instead(field):
    with pytest.raises(ValueError, match="the nerfacto backend has no Gaussians; export a point"):
        world_gaussians(field)


def test_cli_export_kind_splats_writes_a_world_frame_3dgs_ply(tmp_path, monkeypatch, capsys):
    splats = _splats(n=7)
    monkeypatch.setattr(commands, "_field", lambda args, device: FakeField(splats))
    out = tmp_path / "scene.ply"
    code = cli.main(["export", "--checkpoint", str(tmp_path / "x.ckpt"), "--kind", "splats",
                     "--out", str(out), "--device", "cpu"])  # fmt: skip
    assert code == 0
    assert "7 Gaussians" in capsys.readouterr().out
    back = read_gaussian_splat_ply(out)
    np.testing.assert_allclose(back.means, 2.0 * splats.means @ TURN.T + [0.1, 0.2, 0.3],
                               atol=1e-5)  # fmt: skip


def test_cli_export_kind_splats_of_a_nerf_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(commands, "_field", lambda args, device: NoGaussians())
    code = cli.main(["export", "--checkpoint", str(tmp_path / "x.ckpt"), "--kind", "splats",
                     "--out", str(tmp_path / "s.ply"), "--device", "cpu"])  # fmt: skip
    assert code == 2
    assert "the nerfacto backend has no Gaussians" in capsys.readouterr().err
    assert not (tmp_path / "s.ply").exists()


@pytest.mark.parametrize("backend", backend_names())
def test_every_registered_backend_exports_its_gaussians_or_says_it_has_none(tmp_path, backend):
    """A real tiny field of each backend: a splatting one's Gaussians land where its own
    points_to_world puts them; a NeRF is refused with the message that names the way out."""
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, resolution=16)
    field = field_from_dataset(scene.root, get_preset("tiny", backend))
    own = getattr(field, "gaussians", lambda: None)()
    if own is None:
        with pytest.raises(ValueError, match=f"the {backend} backend has no Gaussians"):
            world_gaussians(field)
        return
    world = world_gaussians(field)
    np.testing.assert_allclose(world.means, field.points_to_world(own.means), atol=1e-5)
    path = tmp_path / "splats.ply"
    from edit3d.export.files import write_geometry

    write_geometry(path, world)
    assert PlyData.read(str(path))["vertex"].count == len(own.means)
