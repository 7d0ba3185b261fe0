"""nerfacto on nerfstudio: build offline, train on in-memory targets, render world-frame cameras."""

from edit3d.field.nerfacto_field import NerfactoField, RenderResult, StepResult
from edit3d.field.presets import PRESETS, FieldConfig, get_preset
from edit3d.field.targets import TargetStore

__all__ = [
    "PRESETS",
    "FieldConfig",
    "NerfactoField",
    "RenderResult",
    "StepResult",
    "TargetStore",
    "get_preset",
]
