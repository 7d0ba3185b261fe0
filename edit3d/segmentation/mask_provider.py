"""Mask providers named by import path (`edit3d edit --mask-provider package.module:factory`).

The factory is called with the keyword arguments it declares among ``dataset_root`` (the
workspace's dataset folder, a `Path`) and ``device``; it returns a `MaskProvider`: a
callable ``(view name, pre-rendered image [H, W, 3], turn spec) -> soft mask [H, W] in
[0, 1]`` (or None: edit everywhere), called once per view at the start of a turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edit3d.import_path import declared_arguments, resolve_import_path


def load_mask_provider(spec: str, *, dataset_root: Path, device: str = "cpu") -> Any:
    """The mask provider the factory `spec` makes; ValueError naming `spec` if there is none."""
    factory = resolve_import_path(spec, "mask provider")
    offered = {"dataset_root": Path(dataset_root), "device": device}
    provider = factory(**declared_arguments(factory, offered))
    if not callable(provider):
        raise ValueError(
            f"mask provider {spec!r}: the factory returned {type(provider).__name__}, which is "
            "not callable as (view name, image, spec) -> mask"
        )
    return provider
