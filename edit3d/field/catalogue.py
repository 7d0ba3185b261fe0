"""The built-in field backends and their presets by name, readable without torch.

The registry (`edit3d.field.registry`) builds fields and imports a backend's module (torch,
nerfstudio) on first use. A caller that needs only names — the sidecar checking a request
in its socket loop, a parser listing choices — reads them here: the presets modules are
plain settings records and import neither torch nor nerfstudio.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_BACKEND = "nerfacto"
"""The backend of a field, workspace or session that names none."""
DEFAULT_PRESET = "small"
"""The preset of a workspace or session that names none."""


@dataclass(frozen=True)
class BuiltinBackend:
    """Where a backend that ships with edit3d lives."""

    module: str
    """Module that registers the backend when imported (loads torch and nerfstudio)."""
    presets: str
    """``module:NAME`` of its presets dict (a torch-free module)."""


BUILTIN_BACKENDS: Mapping[str, BuiltinBackend] = {
    "nerfacto": BuiltinBackend("edit3d.field.nerfacto_field", "edit3d.field.presets:PRESETS"),
    "splatfacto": BuiltinBackend(
        "edit3d.field.splatfacto_field", "edit3d.field.splat_presets:SPLAT_PRESETS"
    ),
}


def builtin_backend_names() -> list[str]:
    """Names of the backends that ship with edit3d, sorted."""
    return sorted(BUILTIN_BACKENDS)


def builtin_presets(backend: str = DEFAULT_BACKEND) -> Mapping[str, Any]:
    """The named settings of built-in `backend` (the same dict its registry entry holds)."""
    if backend not in BUILTIN_BACKENDS:
        raise ValueError(f"backend must be one of {builtin_backend_names()}, got {backend!r}")
    module, _, name = BUILTIN_BACKENDS[backend].presets.partition(":")
    return getattr(importlib.import_module(module), name)


def preset_names(backend: str = DEFAULT_BACKEND) -> list[str]:
    """Names of built-in `backend`'s presets, sorted."""
    return sorted(builtin_presets(backend))
