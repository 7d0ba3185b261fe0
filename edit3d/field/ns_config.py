"""Read an ns-train `config.yml` as data: nothing the file names is called or imported.

ns-train writes its `TrainerConfig` with PyYAML's Python tags (`!!python/object:...`,
`!!python/object/apply:pathlib.PosixPath`, `!!python/name:...`, `!!python/tuple`) and nerfstudio
reads it back with `yaml.Loader`, which calls whatever callable a tag names: a config file from
anyone else is code. Here a `SafeLoader` maps every tag to plain data:

* `!!python/object:X` becomes a `ConfigRecord` (attribute access, type name kept) — except the
  few nerfstudio config dataclasses edit3d needs as real objects (`REBUILT_CONFIGS`), which are
  rebuilt by setting their *declared* fields on a default instance; `_target` always stays the
  class's own.
* `!!python/object/apply:` is honoured only for paths and nerfstudio's `EventName` (a string);
  any other callable is refused with an error naming the tag.
* `!!python/name:X` stays the string `"X"`; `!!python/tuple` becomes a tuple.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import SimpleNamespace
from typing import Any

import yaml

_PYTHON_TAG = "tag:yaml.org,2002:python/"

# Config dataclasses rebuilt as real objects (edit3d calls methods on them or compares their
# fields); a name maps to the module that defines it, imported by this table, never by the file.
REBUILT_CONFIGS: dict[str, str] = {
    "nerfstudio.models.nerfacto.NerfactoModelConfig": "nerfstudio.models.nerfacto",
    "nerfstudio.models.splatfacto.SplatfactoModelConfig": "nerfstudio.models.splatfacto",
    "nerfstudio.cameras.camera_optimizers.CameraOptimizerConfig": (
        "nerfstudio.cameras.camera_optimizers"
    ),
    "nerfstudio.data.dataparsers.nerfstudio_dataparser.NerfstudioDataParserConfig": (
        "nerfstudio.data.dataparsers.nerfstudio_dataparser"
    ),
    "nerfstudio.data.dataparsers.colmap_dataparser.ColmapDataParserConfig": (
        "nerfstudio.data.dataparsers.colmap_dataparser"
    ),
    "nerfstudio.data.dataparsers.blender_dataparser.BlenderDataParserConfig": (
        "nerfstudio.data.dataparsers.blender_dataparser"
    ),
}

_PATH_FACTORIES = {
    "pathlib.Path": Path,
    "pathlib.PosixPath": Path,
    "pathlib.WindowsPath": Path,
    "pathlib.PurePath": PurePosixPath,
    "pathlib.PurePosixPath": PurePosixPath,
    "pathlib.PureWindowsPath": PureWindowsPath,
}


class ConfigError(ValueError):
    """A config.yml that is not a plain ns-train config (e.g. it asks to call a function)."""


class ConfigRecord(SimpleNamespace):
    """An `!!python/object` of a type edit3d does not rebuild: its fields as attributes."""

    def __init__(self, type_name: str, fields: dict[str, Any]) -> None:
        super().__init__(**fields)
        self.__dict__["_type_name"] = type_name

    @property
    def type_name(self) -> str:
        return str(self.__dict__["_type_name"])


class _TrainerConfigLoader(yaml.SafeLoader):
    """SafeLoader plus data-only readings of PyYAML's Python tags."""


def _construct_object(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"!!python/object:{suffix} must hold a mapping")
    fields = loader.construct_mapping(node, deep=True)
    return _rebuild(suffix, {str(k): v for k, v in fields.items()})


def _construct_apply(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError(f"!!python/object/apply:{suffix} with keyword form is not accepted")
    args = loader.construct_sequence(node, deep=True)
    if suffix in _PATH_FACTORIES:
        return _PATH_FACTORIES[suffix](*[str(a) for a in args])
    if suffix == "nerfstudio.utils.writer.EventName" and len(args) == 1:
        return str(args[0])
    raise ConfigError(
        f"config.yml asks to call {suffix!r} (!!python/object/apply); only paths are accepted"
    )


def _construct_name(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> str:
    return suffix


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple[Any, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise ConfigError("!!python/tuple must hold a sequence")
    return tuple(loader.construct_sequence(node, deep=True))


def _refuse(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    raise ConfigError(f"config.yml uses the tag {node.tag!r}, which is not accepted")


_TrainerConfigLoader.add_constructor(f"{_PYTHON_TAG}tuple", _construct_tuple)
_TrainerConfigLoader.add_multi_constructor(f"{_PYTHON_TAG}object:", _construct_object)
_TrainerConfigLoader.add_multi_constructor(f"{_PYTHON_TAG}object/apply:", _construct_apply)
_TrainerConfigLoader.add_multi_constructor(f"{_PYTHON_TAG}name:", _construct_name)
# Everything else under python/ (object/new, module, ...) and any unknown tag is refused.
_TrainerConfigLoader.add_multi_constructor(_PYTHON_TAG, _refuse)
_TrainerConfigLoader.add_multi_constructor("!", _refuse)


def _rebuild(type_name: str, fields: dict[str, Any]) -> Any:
    module_name = REBUILT_CONFIGS.get(type_name)
    if module_name is None:
        return ConfigRecord(type_name, fields)
    cls = getattr(importlib.import_module(module_name), type_name.rsplit(".", 1)[1])
    instance = cls()
    declared = {f.name for f in dataclasses.fields(instance)} - {"_target"}
    for name, value in fields.items():
        # A nested object of a type not rebuilt (e.g. an optimizer config) keeps the default.
        if name in declared and not isinstance(value, ConfigRecord):
            setattr(instance, name, value)
    return instance


def read_trainer_config(config_yml: Path) -> ConfigRecord:
    """The ns-train config at `config_yml` as data (see module docstring).

    Raises `ValueError` naming the file when it is missing, is not YAML, is not an ns-train
    `TrainerConfig`, or asks for anything to be called.
    """
    if not config_yml.is_file():
        raise ValueError(f"config_yml must be an ns-train config.yml, got {str(config_yml)!r}")
    try:
        config = yaml.load(config_yml.read_text(), Loader=_TrainerConfigLoader)
    except ConfigError as exc:
        raise ConfigError(f"{config_yml}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_yml} is not valid YAML: {exc}") from None
    if not isinstance(config, ConfigRecord) or not config.type_name.endswith("TrainerConfig"):
        raise ConfigError(f"{config_yml} is not an ns-train TrainerConfig")
    return config
