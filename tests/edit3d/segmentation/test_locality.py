"""Locality of masked turns (paper Sec. 3.2): what is outside the mask stays as it was.

A deterministic editor recolours one object of the sample scene *and tints the whole image*
(the kind of drift InstructPix2Pix shows). Masks come from the ground-truth-backed provider,
so this measures fusion, not segmentation quality. Renders outside the edited object (less
a BORDER_PX band) are compared with the renders before the turn.

The ceiling is the field's own training noise: a turn whose targets are its own fixed
pre-renders (no edit at all) moves renders too. Measured on the 32 px sample scene with the
"tiny" preset: after 300 base + 300 turn steps that floor is 29.1 dB; the masked turn keeps
27.1 dB outside the box, a second masked turn 30.2 dB outside both edited objects, while the
unmasked turn falls to 8.5 dB. The 30 dB aim is met by the second turn, not quite by the
first: at this scale the field's own noise, not the fusion, sets the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from edit3d.segmentation.ground_truth import GroundTruthMaskProvider
from edit3d.segmentation.image_io import read_mask

turns = pytest.importorskip("edit3d.editing.turns")
sample = pytest.importorskip("edit3d.scene.sample")
from edit3d.field import (  # noqa: E402
    RadianceField,
    field_from_checkpoint,
    field_from_dataset,
    get_preset,
)
from edit3d.training import fit  # noqa: E402

TINT = np.array([1.0, 0.35, 0.9], dtype=np.float32)
TINT_STRENGTH = 0.35
GREEN = (0.1, 0.8, 0.2)
ORANGE = (0.95, 0.55, 0.1)
BORDER_PX = 2
"""Pixels next to an edited object are left out: the soft edge and anti-aliasing live there."""


@dataclass
class RecolourAndTint:
    """Editor stand-in: paints one object a flat colour and tints every pixel."""

    masks_dir: Path
    object_id: str
    colour: tuple[float, float, float]

    def edit(self, render, condition, instruction, *, view_name, seed=None, cancel=None):
        mask = read_mask(
            self.masks_dir / self.object_id / f"{Path(view_name).stem}.png", render.shape[:2]
        )
        out = (1 - TINT_STRENGTH) * np.asarray(render, np.float32) + TINT_STRENGTH * TINT
        out[mask] = self.colour
        return out


class NoEdit:
    """Returns the condition (the pre-render): the turn's targets never change."""

    def edit(self, render, condition, instruction, *, view_name, seed=None, cancel=None):
        return np.asarray(condition, np.float32)


@dataclass
class Scene:
    root: Path
    base: Path
    names: list[str]

    def mask(self, object_id: str, name: str, shape) -> np.ndarray:
        return read_mask(self.root / "masks" / object_id / f"{Path(name).stem}.png", shape)

    def outside(self, object_ids: tuple[str, ...], name: str, shape) -> np.ndarray:
        near = np.zeros(shape, dtype=bool)
        for object_id in object_ids:
            near |= self.mask(object_id, name, shape)
        return ~binary_dilation(near, iterations=BORDER_PX)

    def regions(self, object_ids: tuple[str, ...], images: dict) -> dict:
        return {n: self.outside(object_ids, n, images[n].shape[:2]) for n in images}

    def object_mean(self, images: dict, object_id: str) -> np.ndarray:
        pixels = [images[n][self.mask(object_id, n, images[n].shape[:2])] for n in images]
        return np.concatenate(pixels).mean(axis=0)


def make_scene(root: Path, base_steps: int, eval_every: int, backend: str = "nerfacto") -> Scene:
    # No sparse points: the splat figures below were measured from splatfacto's random start
    # (the one that paints the sample scene's sky within a hundred steps).
    scene = sample.make_sample_scene(
        root / "scene", num_views=24, resolution=32, seed=0, num_points=0
    )
    torch.manual_seed(0)  # nerfacto's samplers draw from the global generator
    field = field_from_dataset(scene.root, get_preset("tiny", backend))
    fit(field, field.make_targets(field.dataset_images()), base_steps, lr=field.config.base_lr)
    names = [view.name for view in field.views][::eval_every]
    return Scene(scene.root, field.save_checkpoint(root / "base.pt"), names)


def render_all(field: RadianceField, names: list[str]) -> dict[str, np.ndarray]:
    return {name: field.render(field.view(name)).rgb for name in names}


def psnr_where(a: dict, b: dict, regions: dict) -> float:
    errors = np.concatenate([((a[n] - b[n]) ** 2)[regions[n]] for n in regions])
    mse = float(np.mean(errors))
    return float("inf") if mse == 0 else -10.0 * np.log10(mse)


def turn(checkpoint: Path, spec, turn_dir: Path, editor, provider) -> RadianceField:
    field = field_from_checkpoint(checkpoint)
    torch.manual_seed(1)
    turns.run_turn(field, spec, turn_dir, editor, provider)
    field.save_checkpoint(turn_dir / "after.pt")
    return field


def recolour(scene: Scene, object_id: str, colour, steps: int):
    spec = turns.TurnSpec(
        f"make the {object_id} another colour", edit_queries=(object_id,), steps=steps, edit_rate=2
    )
    return spec, RecolourAndTint(scene.root / "masks", object_id, colour)


@pytest.mark.parametrize("backend", ["nerfacto", "splatfacto"])
def test_a_masked_turn_keeps_the_rest_of_the_scene_and_an_unmasked_one_drifts(tmp_path, backend):
    scene = make_scene(tmp_path, base_steps=100, eval_every=4, backend=backend)
    provider = GroundTruthMaskProvider(scene.root / "masks")
    before = render_all(field_from_checkpoint(scene.base), scene.names)
    spec, editor = recolour(scene, "red_box", GREEN, steps=50)
    masked = render_all(turn(scene.base, spec, tmp_path / "m", editor, provider), scene.names)
    unmasked = render_all(turn(scene.base, spec, tmp_path / "u", editor, None), scene.names)
    regions = scene.regions(("red_box",), before)
    psnr_masked = psnr_where(masked, before, regions)
    psnr_unmasked = psnr_where(unmasked, before, regions)
    print(f"outside the box: masked {psnr_masked:.1f} dB, unmasked {psnr_unmasked:.1f} dB")
    # Measured 25.8 dB masked, 15.1 dB unmasked (50 turn steps on a 100-step base, nerfacto).
    assert psnr_masked >= 24.0
    assert psnr_unmasked <= psnr_masked - 8.0
    green = np.array(GREEN)
    gap_before = np.linalg.norm(scene.object_mean(before, "red_box") - green)
    gap_after = np.linalg.norm(scene.object_mean(masked, "red_box") - green)
    print(f"box colour distance to green: before {gap_before:.3f}, after {gap_after:.3f}")
    # The edit is being learned. Measured: nerfacto 0.59 -> 0.47; splatfacto 0.673 -> 0.594
    # (masked 32.7 dB, unmasked 19.6 dB): 50 whole-image steps show each view only twice.
    assert gap_after < gap_before - {"nerfacto": 0.08, "splatfacto": 0.05}[backend]


@pytest.mark.slow
def test_two_masked_turns_stay_local_down_to_the_training_noise_floor(tmp_path):
    scene = make_scene(tmp_path, base_steps=300, eval_every=3)
    provider = GroundTruthMaskProvider(scene.root / "masks")
    before = render_all(field_from_checkpoint(scene.base), scene.names)
    box_spec, box_editor = recolour(scene, "red_box", GREEN, steps=300)
    no_edit = render_all(turn(scene.base, box_spec, tmp_path / "n", NoEdit(), None), scene.names)
    turn1 = turn(scene.base, box_spec, tmp_path / "t1", box_editor, provider)
    after1 = render_all(turn1, scene.names)
    unmasked = render_all(turn(scene.base, box_spec, tmp_path / "u", box_editor, None), scene.names)
    ball_spec, ball_editor = recolour(scene, "blue_sphere", ORANGE, steps=300)
    after2 = render_all(
        turn(tmp_path / "t1" / "after.pt", ball_spec, tmp_path / "t2", ball_editor, provider),
        scene.names,
    )
    box_out = scene.regions(("red_box",), before)
    floor = psnr_where(no_edit, before, box_out)
    psnr1 = psnr_where(after1, before, box_out)
    psnr_unmasked = psnr_where(unmasked, before, box_out)
    psnr2 = psnr_where(after2, after1, scene.regions(("red_box", "blue_sphere"), before))
    print(
        f"no-edit floor {floor:.1f} dB; turn 1 masked {psnr1:.1f} dB, unmasked "
        f"{psnr_unmasked:.1f} dB; turn 2 masked vs turn 1 {psnr2:.1f} dB"
    )
    # Measured: floor 29.1 dB, turn 1 27.1 dB, turn 2 30.2 dB, unmasked 8.5 dB. The ~2 dB
    # under the floor is the recoloured box leaking through shared hash-grid features.
    assert psnr1 >= floor - 3.0 and psnr1 >= 26.0
    assert psnr2 >= floor - 3.0 and psnr2 >= 26.0
    assert psnr_unmasked <= psnr1 - 10.0
    green, orange = np.array(GREEN), np.array(ORANGE)
    box_before = np.linalg.norm(scene.object_mean(before, "red_box") - green)
    assert np.linalg.norm(scene.object_mean(after1, "red_box") - green) < 0.5 * box_before
    assert np.linalg.norm(scene.object_mean(after2, "red_box") - green) < 0.5 * box_before
    ball_before = np.linalg.norm(scene.object_mean(after1, "blue_sphere") - orange)
    assert np.linalg.norm(scene.object_mean(after2, "blue_sphere") - orange) < 0.5 * ball_before
