"""The settings records' shared plumbing: stored dicts, checks, nerfstudio fields in `extra`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from edit3d.field.plain_config import carry_unmapped, from_plain, to_plain
from edit3d.field.presets import PRESETS, FieldConfig
from edit3d.field.splat_presets import SPLAT_PRESETS, SplatConfig


@pytest.mark.parametrize(
    "config", [*PRESETS.values(), *SPLAT_PRESETS.values()], ids=lambda c: type(c).__name__
)
def test_every_preset_round_trips_through_json(config: FieldConfig | SplatConfig) -> None:
    stored = json.loads(json.dumps(config.to_dict()))  # tuples come back as lists
    assert type(config).from_dict(stored) == config


def test_keys_a_newer_version_wrote_are_left_out() -> None:
    stored = {**PRESETS["tiny"].to_dict(), "a_future_setting": 3}
    assert FieldConfig.from_dict(stored) == PRESETS["tiny"]


@pytest.mark.parametrize(
    ("make", "field_name"),
    [
        (lambda: FieldConfig(nerf_samples=0), "FieldConfig.nerf_samples"),
        (lambda: SplatConfig(refine_every=-1), "SplatConfig.refine_every"),
        (lambda: SplatConfig(base_lr=0.0), "SplatConfig.base_lr"),
    ],
)
def test_a_non_positive_setting_is_named(make: Any, field_name: str) -> None:
    with pytest.raises(ValueError, match=rf"{field_name} must be positive, got"):
        make()


@dataclasses.dataclass
class _ModelConfig:
    """Stands in for a nerfstudio model config: a plain dataclass."""

    mapped: int = 1
    kept_default: str = "a"
    changed: tuple[int, ...] = (1, 2)
    skipped: int = 0


@dataclasses.dataclass(frozen=True)
class _Settings:
    mapped: int = 1
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def test_carry_unmapped_keeps_only_what_the_settings_do_not_rebuild() -> None:
    imported = _ModelConfig(mapped=5, changed=(3, 4), skipped=9)
    settings = carry_unmapped(_Settings(mapped=5), imported, _ModelConfig(mapped=5), ["skipped"])
    assert settings == _Settings(mapped=5, extra={"changed": {"__tuple__": [3, 4]}})
    assert from_plain(json.loads(json.dumps(settings.extra))) == {"changed": (3, 4)}


def test_plain_values_nest() -> None:
    value = {"a": [(1, (2, 3))], 4: {"b": ()}}
    assert from_plain(json.loads(json.dumps(to_plain(value)))) == {
        "a": [(1, (2, 3))],
        "4": {"b": ()},
    }
