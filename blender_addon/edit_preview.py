"""Preview Edit: what a turn would do to the active camera, before committing to it.

The panel's Editor box holds the InstructPix2Pix settings of the next turn: each has an
override switch, and only overridden ones travel (the rest keep the method's defaults,
which the sidecar owns). A preview sends them with the turn fields; its result (a render,
the fusion mask and one edit per seed) becomes one image, before | mask overlay | after per
seed, and Use These Settings copies the chosen seed and the preview's settings back into the
turn fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import scene_io
from .connection import LINK, add_report

EDIT_PREVIEW_IMAGE = "Edit3D Preview"
"""The image datablock of the last Preview Edit: before | mask overlay | after per seed."""

OVERLAY_COLOUR = np.array((1.0, 0.25, 0.1), np.float32)
"""Tint of the edited region in the mask overlay."""
OVERLAY_OPACITY = 0.5

OVERRIDES = (
    ("use_guidance_scale", ("guidance_scale",)),
    ("use_image_guidance_scale", ("image_guidance_scale",)),
    ("use_diffusion_steps", ("diffusion_steps",)),
    ("use_noise_range", ("lower_bound", "upper_bound")),
    ("use_resolution", ("resolution",)),
)
"""Each override switch of the Editor box and the EditorSettings fields it sends."""


def editor_settings(editor: Any, message_types: Any) -> Any:
    """The Editor box as a protocol EditorSettings of the overridden fields (None if none)."""
    given = {
        name: getattr(editor, name)
        for switch, names in OVERRIDES
        if getattr(editor, switch)
        for name in names
    }
    return message_types.EditorSettings(**given) if given else None


def take_method_defaults(editor: Any, defaults: Any) -> None:
    """Start every setting whose override is off at the sidecar's default (the handshake's
    `editor_defaults`), so turning an override on starts from what the method would use.
    Overridden settings and those without a fixed default keep their values."""
    if defaults is None:  # an older sidecar: the declared starting values stay
        return
    for switch, names in OVERRIDES:
        if getattr(editor, switch):
            continue
        for name in names:
            value = getattr(defaults, name, None)
            if value is not None:
                setattr(editor, name, value)


def editor_values(editor: Any) -> dict[str, Any]:
    """Every switch and value of an Editor property group, as plain data (a snapshot)."""
    values: dict[str, Any] = {}
    for switch, names in OVERRIDES:
        values[switch] = bool(getattr(editor, switch))
        values.update({name: getattr(editor, name) for name in names})
    return values


def set_editor_values(editor: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(editor, name, value)


def sheet(before: np.ndarray, mask: np.ndarray, after: np.ndarray) -> np.ndarray:
    """before [H, W, 3] uint8, mask [H, W] in [0, 1], after [S, H, W, 3] uint8 → one float32
    image [H, W·(2 + S), 3]: the render, the render with the edited region tinted, and the
    fused edit of each seed, side by side."""
    render = before.astype(np.float32) / 255.0
    weight = OVERLAY_OPACITY * np.clip(mask, 0.0, 1.0)[..., None]
    overlay = render * (1.0 - weight) + OVERLAY_COLOUR * weight
    edits = [edit.astype(np.float32) / 255.0 for edit in after]
    return np.concatenate([render, overlay, *edits], axis=1)


def on_edit_preview_result(context: Any, result: Any) -> None:
    """Show the preview as one image; remember its seeds and settings for Use These Settings.
    Another client's preview of the same session is not ours to show."""
    route = LINK.jobs.get(result.job_id)
    if route is None or route.editor_values is None:
        return
    props, status = context.scene.edit3d, context.window_manager.edit3d
    image = sheet(np.asarray(result.before), np.asarray(result.mask), np.asarray(result.after))
    props.edit_preview_image = scene_io.image_to_datablock(EDIT_PREVIEW_IMAGE, image)
    status.preview_seeds.clear()
    for seed in result.seeds:
        status.preview_seeds.add().seed = seed
    status.preview_choice = 1
    set_editor_values(status.preview_editor, route.editor_values)
    add_report(context, "INFO", f"Edit preview of {result.view_name}: seeds "
               + ", ".join(str(s) for s in result.seeds))  # fmt: skip


def use_preview_settings(context: Any) -> int:
    """Copy the chosen preview seed and the preview's editor settings into the turn fields;
    returns the seed."""
    props, status = context.scene.edit3d, context.window_manager.edit3d
    if not len(status.preview_seeds):
        raise LookupError("no edit preview yet: press Preview Edit first")
    index = min(max(status.preview_choice, 1), len(status.preview_seeds)) - 1
    props.seed = status.preview_seeds[index].seed
    set_editor_values(props.editor, editor_values(status.preview_editor))
    return props.seed
