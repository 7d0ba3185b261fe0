"""One view's edit (paper Sec. 3.1–3.2): render, mask, edit, fuse — for a turn and a preview.

The turn loop edits its views through `edit_view` with inputs fixed at turn start (the
pre-render as condition and fusion base, the view's mask from it). `preview_edit` edits any
world-frame camera the way the turn's first update would: from the current node's render,
with the ADSS mask of the turn's queries computed on that render, so a preview at a dataset
view with the turn's seed is the image the turn's first edit of that view produces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edit3d.editing.editors import Editor, check_edit_result
from edit3d.editing.fusion import fuse
from edit3d.field.radiance import RadianceField
from edit3d.progress import CancelToken
from edit3d.scene.cameras import CameraView

if TYPE_CHECKING:
    from edit3d.editing.turns import TurnSpec

StepCallback = Callable[[int, int], None]
"""(denoising steps done, steps in the edit), after each step (see `ip2p.StepCallback`)."""

MaskProvider = Callable[[str, np.ndarray, "TurnSpec"], "np.ndarray | None"]
"""(view name, pre-rendered image, spec) → soft mask float [H, W] in [0, 1] (None: all ones)."""


@dataclass(frozen=True)
class ViewInputs:
    """What a view is edited against: fixed for a whole turn, or taken from one render."""

    condition: np.ndarray
    """The editor's condition image (pre-render in Edit3D mode, dataset image in IN2N)."""
    base: np.ndarray | None
    """The image the edit is fused into (the pre-render); None: no fusion (IN2N)."""
    mask: np.ndarray | None
    """Soft mask [H, W] of what may change (None: everywhere)."""


@dataclass(frozen=True)
class ViewEdit:
    """One edited view, every image float32 [H, W, 3] (mask [H, W]) at the render's size."""

    before: np.ndarray
    """The current node's render the editor started from."""
    mask: np.ndarray | None
    """The fusion mask at the render's size (None: the whole view)."""
    edited: np.ndarray
    """The editor's output."""
    after: np.ndarray
    """The edit fused into the base through the mask: the view's new training target."""


def edit_seed(turn_seed: int, step: int, index: int) -> int:
    """Seed of the `index`-th view edited before iteration `step` of a turn seeded `turn_seed`."""
    return turn_seed * 1_000_003 + step * 101 + index


def edit_view(
    field_: RadianceField,
    view: CameraView,
    spec: TurnSpec,
    editor: Editor,
    inputs: ViewInputs | None = None,
    *,
    size: tuple[int, int] | None = None,
    mask_provider: MaskProvider | None = None,
    seed: int,
    cancel: CancelToken | None = None,
    on_step: StepCallback | None = None,
) -> ViewEdit:
    """Render `view` from the field's current state at `size` (height, width; default its
    training size), edit it with `spec`'s instruction and settings, and fuse.

    Without `inputs` the render is the condition and the fusion base, and the mask is
    `mask_provider`'s for that render (what a turn does at its start). `editor` must already
    carry the spec's settings (see `configured_editor`).
    """
    height, width = size or _render_size(field_, view)
    before = field_.render(view, width=width, height=height).rgb
    if inputs is None:
        inputs = _inputs_from_render(field_, view, before, spec, mask_provider)
    return edit_render(
        before, view.name, spec, editor, inputs, seed=seed, cancel=cancel, on_step=on_step
    )


def edit_render(
    before: np.ndarray,
    view_name: str,
    spec: TurnSpec,
    editor: Editor,
    inputs: ViewInputs,
    *,
    seed: int,
    cancel: CancelToken | None = None,
    on_step: StepCallback | None = None,
) -> ViewEdit:
    """Edit one already rendered view (`before`, float32 [H, W, 3]) and fuse: the part of
    `edit_view` that needs no field, so an editor in another process can run it."""
    height, width = before.shape[:2]
    mask = _resized_mask(inputs.mask, height, width)
    extra: dict[str, Any] = {"on_step": on_step} if on_step is not None else {}
    edited = check_edit_result(
        editor.edit(
            before,
            _resized(inputs.condition, height, width),
            spec.instruction,
            view_name=view_name,
            seed=seed,
            cancel=cancel,
            **extra,
        ),
        before,
        editor=spec.editor,
    )
    if inputs.base is None:
        return ViewEdit(before, None, edited, edited)
    after = fuse(edited, _resized(inputs.base, height, width), mask)
    return ViewEdit(before, mask, edited, after)


def preview_edit(
    field_: RadianceField,
    view: CameraView,
    spec: TurnSpec,
    editor: Editor,
    mask_provider: MaskProvider | None = None,
    *,
    seed: int | None = None,
    size: tuple[int, int] | None = None,
    cancel: CancelToken | None = None,
    on_step: StepCallback | None = None,
) -> ViewEdit:
    """What `spec` would do to `view` (any world-frame camera) if run from the field's
    current state: the turn's first edit of that view. `seed` defaults to the seed of the
    turn's first edit (`edit_seed(spec.seed, 0, 0)`)."""
    return edit_view(
        field_, view, spec, configured_editor(editor, spec), None,
        size=size, mask_provider=mask_provider,
        seed=edit_seed(spec.seed, 0, 0) if seed is None else seed,
        cancel=cancel, on_step=on_step,
    )  # fmt: skip


def configured_editor(editor: Editor, spec: TurnSpec) -> Editor:
    """`editor` editing with the spec's settings (editors without settings are used as they
    are: their factory configured them)."""
    with_settings = getattr(editor, "with_settings", None)
    return with_settings(spec.editor_settings) if callable(with_settings) else editor


def checked_mask(name: str, mask: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """A mask provider's output as float32 [H, W] in [0, 1] at `size`; refuses other shapes."""
    array = np.asarray(mask, dtype=np.float32)
    if array.ndim != 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"mask of {name!r} must be a finite [H, W] array, got {array.shape}")
    return np.clip(_resized_mask(array, *size), 0.0, 1.0)


def _inputs_from_render(
    field_: RadianceField,
    view: CameraView,
    before: np.ndarray,
    spec: TurnSpec,
    mask_provider: MaskProvider | None,
) -> ViewInputs:
    if spec.mode == "in2n":
        # IN2N conditions on the dataset image where there is one and never fuses.
        images = field_.dataset_images() if _is_training_view(field_, view) else {}
        return ViewInputs(images.get(view.name, before), None, None)
    return ViewInputs(before, before, _mask_of(view.name, before, spec, mask_provider))


def _mask_of(
    name: str, image: np.ndarray, spec: TurnSpec, mask_provider: MaskProvider | None
) -> np.ndarray | None:
    if mask_provider is None:
        return None
    mask = mask_provider(name, image, spec)
    return None if mask is None else checked_mask(name, mask, image.shape[:2])


def _is_training_view(field_: RadianceField, view: CameraView) -> bool:
    """Same name and pose as a training view (what the field renders as that view)."""
    return any(v.name == view.name and np.allclose(v.c2w, view.c2w) for v in field_.views)


def _render_size(field_: RadianceField, view: CameraView) -> tuple[int, int]:
    if _is_training_view(field_, view):
        return field_.training_size(view)
    return int(view.intrinsics.height), int(view.intrinsics.width)


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(tensor, size=(height, width), mode="area")
    return out[0].permute(1, 2, 0).numpy()


def _resized_mask(mask: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    if mask is None:
        return None
    return _resized(mask[..., None], height, width)[..., 0]
