"""What every backend's settings record shares: positive-number checks, the plain (JSON-able)
dict a checkpoint or workspace stores, and nerfstudio model-config fields carried in `extra`.

A settings record (`FieldConfig`, `SplatConfig`) is a frozen dataclass that derives from
`PlainConfig` and maps some fields onto its nerfstudio model config one by one; every other
field of an imported nerfstudio config that differs from what the record rebuilds rides along
in the record's `extra` dict, as plain data (`carry_unmapped`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self, TypeVar

Settings = TypeVar("Settings")


class PlainConfig:
    """Mixin of the settings dataclasses: `to_dict()` / `from_dict()` as stored data."""

    tuple_fields: ClassVar[tuple[str, ...]] = ()
    """Fields that are tuples (a stored dict, as JSON, holds them as lists)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The settings `data` stores; keys this version does not know are left out (a
        record saved by a newer edit3d still loads)."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = {k: v for k, v in data.items() if k in known}
        for name in cls.tuple_fields:
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


def require_positive(settings: object, names: Iterable[str]) -> None:
    """Raise a ValueError naming the first of `settings`' fields `names` that is not > 0."""
    for name in names:
        value = getattr(settings, name)
        if value <= 0:
            raise ValueError(f"{type(settings).__name__}.{name} must be positive, got {value}")


def carry_unmapped(
    settings: Settings, model_config: Any, rebuilt: Any, skip: Iterable[str]
) -> Settings:
    """`settings` with `extra` set to every field of nerfstudio's `model_config` (a dataclass)
    that `rebuilt` — the model config made from `settings` — gets different, as plain data:
    the settings then rebuild `model_config` exactly. Fields in `skip` are left out."""
    skipped = set(skip)
    extra = {
        f.name: to_plain(getattr(model_config, f.name))
        for f in dataclasses.fields(model_config)
        if f.name not in skipped and getattr(model_config, f.name) != getattr(rebuilt, f.name)
    }
    return dataclasses.replace(settings, extra=extra)  # type: ignore[type-var]


def to_plain(value: Any) -> Any:
    """A config value as JSON-able data (tuples become {"__tuple__": [...]} to round-trip)."""
    if isinstance(value, tuple):
        return {"__tuple__": [to_plain(v) for v in value]}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def from_plain(value: Any) -> Any:
    """The config value `to_plain` made `value` from."""
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(from_plain(v) for v in value["__tuple__"])
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    return value
