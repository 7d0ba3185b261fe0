"""Field backends by name: build, load and import a `RadianceField` without naming its class.

A backend registers one `FieldBackend`: its settings type (which carries the backend's name
as `backend`), its presets, and how to build a field from a dataset, from a checkpoint's
state and from an `ns-train` run. A workspace stores the backend's name with its settings;
checkpoints name their format, which names the backend.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edit3d.field.catalogue import BUILTIN_BACKENDS, DEFAULT_BACKEND
from edit3d.field.radiance import RadianceField
from edit3d.scene.dataset import SceneDataset, load_dataset


@dataclass(frozen=True)
class FieldBackend:
    """How one backend is built; see the module docstring."""

    name: str
    checkpoint_format: str
    """The `format` its checkpoints carry."""
    config_from_dict: Callable[[Mapping[str, Any]], Any]
    presets: Mapping[str, Any]
    """Named settings ("paper", "small", "tiny")."""
    from_dataset: Callable[[SceneDataset, Any, str, int], RadianceField]
    """(dataset, settings, device, seed) → an untrained field."""
    from_state: Callable[[Mapping[str, Any], str], RadianceField]
    """(checkpoint state, device) → the saved field."""
    nerfstudio_model: str | None = None
    """Class name of the nerfstudio model config whose runs it imports (None: none)."""
    from_nerfstudio_run: Callable[[Path, str, Path | None], RadianceField] | None = None
    """(config.yml, device, dataset folder or None) → the run's field."""
    to_nerfstudio_run: Callable[[RadianceField, Path, str, str], Path] | None = None
    """(field, output folder, experiment, timestamp) → config.yml of a run folder written
    for nerfstudio's tools."""


_BACKENDS: dict[str, FieldBackend] = {}


def register_backend(backend: FieldBackend) -> None:
    """Make `backend` available by its name (a second registration of a name replaces it)."""
    _BACKENDS[backend.name] = backend


def backend_names() -> list[str]:
    _load_builtin_backends()
    return sorted(_BACKENDS)


def get_backend(name: str) -> FieldBackend:
    """The backend registered as `name`."""
    _load_builtin_backends()
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)}, got {name!r}")
    return _BACKENDS[name]


def get_preset(name: str, backend: str = DEFAULT_BACKEND) -> Any:
    """The settings preset called `name` of `backend`."""
    presets = get_backend(backend).presets
    if name not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {name!r}")
    return presets[name]


def config_from_dict(data: Mapping[str, Any], backend: str = DEFAULT_BACKEND) -> Any:
    """A backend's settings from their saved dict."""
    return get_backend(backend).config_from_dict(data)


def field_from_dataset(
    dataset: str | Path | SceneDataset, config: Any, device: str = "cpu", *, seed: int = 0
) -> RadianceField:
    """An untrained field of the backend `config` belongs to (its `backend` attribute)."""
    loaded = dataset if isinstance(dataset, SceneDataset) else load_dataset(dataset)
    return get_backend(config.backend).from_dataset(loaded, config, device, seed)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's state (on CPU, weights_only: a checkpoint is data, never code)."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers; it is not loaded "
            f"(weights_only): {str(exc).splitlines()[0]}"
        ) from None


def field_from_state(state: Mapping[str, Any], device: str = "cpu") -> RadianceField:
    """The field a checkpoint state describes, built by the backend its format names."""
    _load_builtin_backends()
    fmt = state.get("format")
    for backend in _BACKENDS.values():
        if backend.checkpoint_format == fmt:
            return backend.from_state(state, device)
    known = sorted(b.checkpoint_format for b in _BACKENDS.values())
    raise ValueError(f"checkpoint format must be one of {known}, got {fmt!r}")


def field_from_checkpoint(path: str | Path, device: str = "cpu") -> RadianceField:
    """The field saved at `path` by `RadianceField.save_checkpoint`."""
    try:
        return field_from_state(read_checkpoint(path), device)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def field_from_nerfstudio_run(
    config_yml: str | Path, device: str = "cpu", *, data: str | Path | None = None
) -> RadianceField:
    """The field of an `ns-train` run, by the backend that imports its model."""
    from edit3d.field.ns_config import read_trainer_config

    _load_builtin_backends()
    model = type(read_trainer_config(Path(config_yml)).pipeline.model).__name__
    for backend in _BACKENDS.values():
        if backend.nerfstudio_model == model and backend.from_nerfstudio_run is not None:
            return backend.from_nerfstudio_run(
                Path(config_yml), device, Path(data) if data is not None else None
            )
    importable = sorted(b.nerfstudio_model for b in _BACKENDS.values() if b.nerfstudio_model)
    raise ValueError(f"config_yml must be a run of {importable}, got a {model} run")


def write_nerfstudio_run(
    field: RadianceField, out_dir: str | Path, *, experiment: str = "edit3d", timestamp: str
) -> Path:
    """Write `field` as an ns-train output folder (`<out_dir>/<experiment>/<method>/
    <timestamp>/config.yml`, checkpoint, dataparser transform); returns its config.yml."""
    writer = get_backend(field.backend).to_nerfstudio_run
    if writer is None:
        raise ValueError(f"the {field.backend} backend cannot write nerfstudio runs")
    return writer(field, Path(out_dir), experiment, timestamp)


def _load_builtin_backends() -> None:
    """Import the backends that ship with edit3d (each registers itself on import)."""
    for builtin in BUILTIN_BACKENDS.values():
        importlib.import_module(builtin.module)


def nerfstudio_run_folders(config_yml: Path) -> tuple[Path, Path]:
    """(dataset folder, checkpoint folder) an ns-train run's config.yml names, found as
    `field_from_nerfstudio_run` would find them: for a caller that confines what a run may
    read. Any backend's run: the config is read as data, nothing is built."""
    from edit3d.field.nerfstudio_run import run_folders

    return run_folders(config_yml)
