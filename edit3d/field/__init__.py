"""Radiance fields behind one seam: the `RadianceField` protocol and backends by name.

Callers build fields through the registry (`field_from_dataset`, `field_from_checkpoint`,
`field_from_nerfstudio_run`) and use only the protocol; the nerfacto backend lives in
`nerfacto_field.py` and registers itself. `edit3d.field.catalogue` names the built-in
backends and their presets without importing torch.

Names are imported on first use (PEP 562): importing this package (e.g. for the catalogue)
does not pay for torch and nerfstudio.
"""

from __future__ import annotations

from edit3d.lazy import lazy_exports

_REGISTRY = "edit3d.field.registry"
_EXPORTS = {
    "DEFAULT_BACKEND": "edit3d.field.catalogue",
    "DEFAULT_PRESET": "edit3d.field.catalogue",
    "PRESETS": "edit3d.field.presets",
    "FieldConfig": "edit3d.field.presets",
    "FieldCapabilities": "edit3d.field.radiance",
    "RadianceField": "edit3d.field.radiance",
    "RenderResult": "edit3d.field.radiance",
    "StepResult": "edit3d.field.radiance",
    "TargetStore": "edit3d.field.targets",
    **dict.fromkeys(
        (
            "FieldBackend",
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
        ),
        _REGISTRY,
    ),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("edit3d.field", _EXPORTS)
