"""Which real weights a job needs, checked against the sidecar's handshake before sending.

The sidecar lists the registered models it lacks (`HandshakeReply.weights_missing`). A job
that needs one of them would fail on the sidecar after queueing, so the add-on says so and
does not submit it. A sidecar on the tiny profile (capability "profile.tiny") runs seeded
random miniatures and needs no weights at all. No bpy here: the tables are tested against
edit3d's own lists without Blender.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

TINY_PROFILE_CAPABILITY = "profile.tiny"
"""Capability of a sidecar whose jobs run on tiny random networks (no weights needed)."""

EDITOR_MODELS: dict[str, tuple[str, ...]] = {"ip2p": ("instruct-pix2pix",)}
"""Weights of the editors the add-on can name (a turn's `editor` field)."""
CAPTION_MODEL = "blip-caption-large"
"""ADSS captioner: needed only when the turn gives no caption of its own."""
SEGMENTATION_MODELS: tuple[str, ...] = ("blip-itm-large-coco", "sam-vit-h")
"""ADSS attention and mask proposals: needed whenever a turn names edit or keep queries."""
SR_MODELS: tuple[str, ...] = ("realesrgan-x4plus",)
"""The super-resolution fine-tune's upscaler."""
FACE_MODELS: tuple[str, ...] = ("gfpgan-v1.4", "yunet-face")
"""Face restoration in the fine-tune (when its `faces` option is on)."""
LPIPS_MODEL = "lpips-alex"
"""The perceptual term of a turn's loss (instruct-nerf2nerf's L1 + LPIPS)."""
PERCEPTUAL_LOSS_PRESETS: dict[str, tuple[str, ...]] = {
    "": ("paper", "small"),
    "nerfacto": ("paper", "small"),
}
"""Per field backend ("": the default one), the presets whose turns train with LPIPS."""


def segmentation_needs(*, has_queries: bool, has_caption: bool) -> tuple[str, ...]:
    """Models ADSS loads for a turn or mask preview."""
    if not has_queries:
        return ()
    return (*(() if has_caption else (CAPTION_MODEL,)), *SEGMENTATION_MODELS)


def turn_needs(
    *, editor: str, has_queries: bool, has_caption: bool, preset: str = "", backend: str = ""
) -> tuple[str, ...]:
    """Models an editing turn loads (an operator-allowed editor brings its own); `preset`
    and `backend` (empty: the default) are the session's."""
    editor_models = EDITOR_MODELS.get(editor, ())
    loss_models = (LPIPS_MODEL,) if preset in PERCEPTUAL_LOSS_PRESETS.get(backend, ()) else ()
    segmentation = segmentation_needs(has_queries=has_queries, has_caption=has_caption)
    return (*editor_models, *segmentation, *loss_models)


def refine_needs(*, faces: bool) -> tuple[str, ...]:
    """Models the super-resolution fine-tune loads."""
    return (*SR_MODELS, *(FACE_MODELS if faces else ()))


def missing_for(
    needed: Iterable[str], weights_missing: Sequence[str], capabilities: Sequence[str]
) -> list[str]:
    """The needed models the sidecar lacks, in `needed`'s order (none on the tiny profile)."""
    if TINY_PROFILE_CAPABILITY in capabilities:
        return []
    lacking = set(weights_missing)
    return [name for name in needed if name in lacking]


def refusal(job: str, missing: Sequence[str]) -> str:
    """What the user reads instead of a job that would fail on the sidecar."""
    names = ", ".join(missing)
    return (
        f"Not sent: {job} needs model weights the sidecar does not have ({names}). "
        f"Fetch them on the sidecar's machine: edit3d models fetch {' '.join(missing)}"
    )


def split_names(text: str) -> list[str]:
    """A comma-joined list as stored in a string property → the names."""
    return [name.strip() for name in text.split(",") if name.strip()]
