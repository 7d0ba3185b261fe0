"""`TurnSpec`: what one editing turn does, the one owner of a turn's defaults.

Kept free of torch so that the command line's `--help` and the sidecar's request mapping can
read the defaults without loading the method (`edit3d.editing.turns` runs the turn).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

from edit3d.editing.settings import EditorSettings


@dataclass(frozen=True)
class TurnSpec:
    """What one turn does."""

    instruction: str
    """The editing instruction given to the editor, e.g. "Give him a cowboy hat"."""
    edit_queries: tuple[str, ...] = ()
    """Region(s) to edit, found by segmentation (empty: no region restriction)."""
    keep_queries: tuple[str, ...] = ()
    """Region(s) to keep unchanged (inverse mode: M = 1 − M_keep)."""
    caption: str | None = None
    """Image caption prepended to the queries (None: the segmenter captions itself)."""
    mode: Literal["edit3d", "in2n"] = "edit3d"
    """"edit3d": condition on pre-renders (Sec. 3.1); "in2n": on dataset images (ablation)."""
    steps: int | None = None
    """Training iterations of the turn (None: the field preset's turn_steps)."""
    edit_rate: int = 10
    """Iterations between target updates (IN2N default 10)."""
    edit_count: int = 1
    """Views edited at each update (IN2N default 1; "rounds" edits every view)."""
    update: Literal["per_view", "rounds"] = "per_view"
    """Dataset-update schedule: "per_view" replaces `edit_count` views round-robin every
    `edit_rate` iterations (Edit3D, IN2N); "rounds" edits every view at once every
    `edit_rate` iterations (instruct-gs2gs: 2500). See docs/method.md for the default."""
    lr: float = 0.0025
    """Learning rate of the NeRF parameters during the turn (paper: 0.0025)."""
    seed: int = 0
    """Seed of the editor's noise (each edit gets its own seed derived from it)."""
    editor: str = "ip2p"
    """Editor spec for `edit3d.editing.editors.load_editor` ("ip2p", "ip2p-tiny", "pkg.mod:Cls")."""
    segmentation: str = ""
    """What made the region masks, kept for the history: "adss" (real weights), "adss-tiny"
    (random models: not a real mask), "folder:<path>", "provider:<import path>", or "" (no
    region)."""
    editor_settings: EditorSettings = field(default_factory=EditorSettings)
    """Guidance, diffusion steps, noise range and working resolution of every edit."""

    def __post_init__(self) -> None:
        if not self.instruction.strip():
            raise ValueError(f"instruction must not be empty, got {self.instruction!r}")
        if self.mode not in ("edit3d", "in2n"):
            raise ValueError(f"mode must be 'edit3d' or 'in2n', got {self.mode!r}")
        if self.update not in ("per_view", "rounds"):
            raise ValueError(f"update must be 'per_view' or 'rounds', got {self.update!r}")
        for name in ("edit_rate", "edit_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        object.__setattr__(self, "edit_queries", tuple(self.edit_queries))
        object.__setattr__(self, "keep_queries", tuple(self.keep_queries))
        if isinstance(self.editor_settings, dict):
            object.__setattr__(
                self, "editor_settings", EditorSettings.from_dict(self.editor_settings)
            )
        if not isinstance(self.editor_settings, EditorSettings):
            raise ValueError(
                f"editor_settings must be EditorSettings, got {type(self.editor_settings)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def turn_default(name: str) -> Any:
    """The default of `TurnSpec.<name>` (what a turn does when nobody sets it)."""
    return TurnSpec.__dataclass_fields__[name].default


def turn_choices(name: str) -> tuple[str, ...]:
    """The values a Literal-typed `TurnSpec.<name>` accepts, in declaration order."""
    return get_args(get_type_hints(TurnSpec)[name])
