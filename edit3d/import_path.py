"""Callables named by an import path, "package.module:Attribute" (editors, mask providers)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any


def resolve_import_path(spec: str, what: str) -> Callable[..., Any]:
    """The callable `spec` names; ValueError starting with "`what` {spec!r}" if it names none."""
    module_name, _, attribute_path = spec.partition(":")
    if not module_name or not attribute_path:
        raise ValueError(f"{what} {spec!r} must look like 'package.module:Factory'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"{what} {spec!r}: cannot import module {module_name!r} ({error})"
        ) from error
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError as error:
            raise ValueError(
                f"{what} {spec!r}: {module_name!r} has no attribute {attribute_path!r}"
            ) from error
    if not callable(target):
        raise ValueError(f"{what} {spec!r}: {attribute_path!r} is not callable")
    return target


def declared_arguments(factory: Callable[..., Any], offered: Mapping[str, Any]) -> dict[str, Any]:
    """The `offered` keyword arguments that `factory` declares by name (all of them if it
    takes **kwargs): a user's factory gets only what it asks for."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(offered)
    names = {p.name for p in parameters if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return {name: value for name, value in offered.items() if name in names}
