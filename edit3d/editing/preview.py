"""Previews of an edit before committing a turn: cameras from the user, images for people.

`edit3d preview` and the sidecar's `job.preview_edit` edit one camera with
`edit3d.editing.view_edit.preview_edit` once per seed and show before, mask and after side by
side; this module holds what they share besides that call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edit3d.editing.view_edit import ViewEdit
from edit3d.field.radiance import RadianceField, as_new_camera
from edit3d.scene.cameras import CameraView, cameras_from_json_text

MASK_TINT = np.array([1.0, 0.25, 0.1], dtype=np.float32)
"""Colour laid over the region the edit may change in the mask overlay."""


def camera_from_text(text: str, field_: RadianceField) -> CameraView:
    """A dataset view name, or JSON (inline or a .json file) of one world-frame camera in the
    protocol's camera record (`edit3d.scene.cameras.CAMERA_KEYS`), rendered as a new camera."""
    names = [view.name for view in field_.views]
    if text in names:
        return field_.view(text)
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        path = Path(text)
        if path.suffix != ".json" or not path.is_file():
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise ValueError(
                f"camera {text!r} is neither a view name of this workspace ({shown}), "
                "inline JSON nor a .json file"
            )
        stripped = path.read_text()
    cameras = cameras_from_json_text(stripped)
    if len(cameras) != 1:
        raise ValueError(f"camera JSON must hold one camera, got {len(cameras)}")
    camera = cameras[0]
    named = CameraView(camera.name or "preview", camera.c2w, camera.intrinsics)
    return as_new_camera(named)


def mask_overlay(edit: ViewEdit) -> np.ndarray:
    """The render with the editable region tinted (all of it when there is no mask)."""
    weight = np.ones(edit.before.shape[:2], np.float32) if edit.mask is None else edit.mask
    weight = 0.6 * weight[..., None]
    return (edit.before * (1.0 - weight) + MASK_TINT * weight).astype(np.float32)


def contact_sheet(rows: Sequence[ViewEdit], gap: int = 4) -> np.ndarray:
    """One row per edit: before | mask overlay | after, on a white background."""
    if not rows:
        raise ValueError("a contact sheet needs at least one edit")
    height, width = rows[0].before.shape[:2]
    sheet = np.ones(
        (len(rows) * height + (len(rows) - 1) * gap, 3 * width + 2 * gap, 3), np.float32
    )
    for r, edit in enumerate(rows):
        top = r * (height + gap)
        for c, image in enumerate((edit.before, mask_overlay(edit), edit.after)):
            left = c * (width + gap)
            sheet[top : top + height, left : left + width] = image
    return sheet


def write_preview(folder: Path, edits: Sequence[tuple[int, ViewEdit]]) -> list[Path]:
    """PNGs `seed_<s>_{before,mask,after}.png` per (seed, edit) and `sheet.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for seed, edit in edits:
        for kind, image in (("before", edit.before), ("mask", _mask_image(edit)),
                            ("after", edit.after)):  # fmt: skip
            written.append(save_png(folder / f"seed_{seed}_{kind}.png", image))
    written.append(save_png(folder / "sheet.png", contact_sheet([e for _, e in edits])))
    return written


def save_png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _mask_image(edit: ViewEdit) -> np.ndarray:
    mask = np.ones(edit.before.shape[:2], np.float32) if edit.mask is None else edit.mask
    return np.repeat(mask[..., None], 3, axis=2)
