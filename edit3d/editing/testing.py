"""Editors for tests and benchmarks of the editing machinery (never for real edits)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edit3d.editing.editors import load_editor
from edit3d.editing.settings import EditorSettings
from edit3d.progress import CancelToken


class PacedEditor:
    """An editor that takes at least `seconds` per edit (cancellable every 10 ms) and then
    returns `inner`'s edit: a stand-in for a slow GPU editor in CPU tests and benchmarks.

    ``edit3d.editing.testing:PacedEditor`` with ``{"seconds": 0.5}`` is importable by an
    editor pool's actors; `inner` is an editor spec (default ``ip2p-tiny``, deterministic per
    seed), an editor, or None (the edit returns the condition: waiting that costs no CPU, as
    an editor on a GPU of its own).
    """

    is_pipeline_check = True

    def __init__(self, seconds: float = 0.5, inner: Any = "ip2p-tiny", **inner_options: Any):
        if seconds < 0:
            raise ValueError(f"seconds must be ≥ 0, got {seconds}")
        self.seconds = seconds
        self.inner = load_editor(inner, **inner_options) if isinstance(inner, str) else inner

    def with_settings(self, settings: EditorSettings) -> PacedEditor:
        with_settings = getattr(self.inner, "with_settings", None)
        paced = PacedEditor.__new__(PacedEditor)
        paced.seconds = self.seconds
        paced.inner = with_settings(settings) if callable(with_settings) else self.inner
        return paced

    def edit(
        self,
        render: np.ndarray,
        condition: np.ndarray,
        instruction: str,
        *,
        view_name: str,
        seed: int | None = None,
        cancel: CancelToken | None = None,
        **extra: Any,
    ) -> np.ndarray:
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            if cancel is not None:
                cancel.raise_if_cancelled()
            time.sleep(min(0.01, max(deadline - time.monotonic(), 0.0)))
        if self.inner is None:
            return np.asarray(condition, dtype=np.float32)
        return self.inner.edit(
            render, condition, instruction, view_name=view_name, seed=seed, cancel=cancel, **extra
        )


PAINT_COLOURS = {"red": (0.9, 0.1, 0.1), "blue": (0.1, 0.2, 0.9)}
"""Colours `ObjectPainter` knows."""


class ObjectPainter:
    """Paints one object of a tiny test scene (`edit3d.field.testing.TinyScene`) in the
    *condition* image: "paint sphere_a red" sets sphere_a's pixels to red and keeps the rest
    of the condition, so what the condition carries is what the edit keeps (retention).

    `calls` records ``(view_name, seed)`` of every edit in order, for tests that count or
    order the edits a turn asks for."""

    is_pipeline_check = True

    def __init__(self, scene: Any) -> None:
        self.scene = scene
        self.calls: list[tuple[str, int | None]] = []

    def edit(
        self,
        render: np.ndarray,
        condition: np.ndarray,
        instruction: str,
        *,
        view_name: str,
        seed: int | None = None,
        cancel: CancelToken | None = None,
        **extra: Any,
    ) -> np.ndarray:
        if cancel is not None:
            cancel.raise_if_cancelled()
        _, object_id, colour = instruction.split()
        view = next(v for v in self.scene.views if v.name == view_name)
        mask = self.scene.object_mask(object_id, view)
        if not mask.shape == render.shape[:2] == condition.shape[:2]:
            raise ValueError(
                f"view {view_name!r}: render {render.shape} and condition {condition.shape} "
                f"do not match the view's {mask.shape} pixels"
            )
        out = np.array(condition, dtype=np.float32, copy=True)
        out[mask] = PAINT_COLOURS[colour]
        self.calls.append((view_name, seed))
        return out
