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
    editor pool's actors; the default inner editor is ``ip2p-tiny`` (deterministic per seed).
    """

    is_pipeline_check = True

    def __init__(self, seconds: float = 0.5, inner: str = "ip2p-tiny", **inner_options: Any):
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
        return self.inner.edit(
            render, condition, instruction, view_name=view_name, seed=seed, cancel=cancel, **extra
        )
