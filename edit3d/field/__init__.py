"""Radiance fields behind one seam: the `RadianceField` protocol and backends by name.

Callers build fields through the registry (`field_from_dataset`, `field_from_checkpoint`,
`field_from_nerfstudio_run`) and use only the protocol; the nerfacto backend lives in
`nerfacto_field.py` and registers itself.
"""

from edit3d.field.presets import PRESETS, FieldConfig
from edit3d.field.radiance import FieldCapabilities, RadianceField, RenderResult, StepResult
from edit3d.field.registry import (
    DEFAULT_BACKEND,
    FieldBackend,
    backend_names,
    config_from_dict,
    field_from_checkpoint,
    field_from_dataset,
    field_from_nerfstudio_run,
    field_from_state,
    get_backend,
    get_preset,
    nerfstudio_run_folders,
    register_backend,
    write_nerfstudio_run,
)
from edit3d.field.targets import TargetStore

__all__ = [
    "DEFAULT_BACKEND",
    "PRESETS",
    "FieldBackend",
    "FieldCapabilities",
    "FieldConfig",
    "RadianceField",
    "RenderResult",
    "StepResult",
    "TargetStore",
    "backend_names",
    "config_from_dict",
    "field_from_checkpoint",
    "field_from_dataset",
    "field_from_nerfstudio_run",
    "field_from_state",
    "get_backend",
    "get_preset",
    "nerfstudio_run_folders",
    "register_backend",
    "write_nerfstudio_run",
]
