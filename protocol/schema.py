"""Typed, validated records: the building block of every message.

A record is a frozen dataclass whose fields are checked at construction against their
annotations and an optional `Rule` (ranges, lengths, allowed values, array dtypes/shapes,
path safety). The same check runs on both sides: a sender cannot build an invalid message
and a receiver turns any wire value that fails it into a `ProtocolError`.

Supported annotations: `str`, `int`, `float`, `bool`, `Literal[...]`, `np.ndarray`,
`tuple[T, ...]`, `tuple[T1, T2]`, `Scalars` (flat str-keyed map of scalars), nested records,
and `X | None` of any of these.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import numpy as np

from .errors import ErrorCode, ProtocolError

Scalar = str | int | float | bool | None
Scalars = dict[str, Scalar]
"""A flat map of scalars (free-form summaries, parameters)."""

DTYPES: frozenset[str] = frozenset(
    {"|u1", "|i1", "|b1", "<u2", "<i2", "<u4", "<i4", "<i8", "<u8", "<f2", "<f4", "<f8"}
)
"""Array dtypes allowed on the wire (little-endian only)."""

DEFAULT_MAX_STR = 4096
DEFAULT_MAX_ITEMS = 4096
MAX_SCALARS = 256
PathKind = Literal["relative", "absolute_or_relative"]


@dataclass(frozen=True)
class Rule:
    """Constraints on one field beyond its type."""

    ge: float | None = None
    """Smallest allowed number (inclusive)."""
    le: float | None = None
    """Largest allowed number (inclusive)."""
    max_len: int = DEFAULT_MAX_STR
    """Longest string in characters (also for each element of a tuple of strings)."""
    max_items: int = DEFAULT_MAX_ITEMS
    """Most elements in a tuple."""
    pattern: str | None = None
    """Regular expression a string must match in full."""
    nonfinite: bool = False
    """Allow NaN/inf in floats and float arrays."""
    path: PathKind | None = None
    """The string is a path: "relative" = inside a session (no `..`, not absolute)."""
    dtypes: tuple[str, ...] | None = None
    """Allowed array dtypes (subset of DTYPES); None = any whitelisted dtype."""
    shape: tuple[int | None, ...] | None = None
    """Array shape; None entries are free dimensions."""
    ndim: tuple[int, ...] | None = None
    """Allowed array ranks when `shape` is not given."""
    max_bytes: int | None = None
    """Largest array in bytes (defaults to the codec's buffer cap)."""


def param(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    **rule: Any,
) -> Any:
    """A dataclass field carrying a `Rule` (keyword arguments are the rule's fields)."""
    return field(default=default, default_factory=default_factory, metadata={"rule": Rule(**rule)})


def record(cls: type[Any]) -> type[Any]:
    """Make a `Record` subclass a frozen, keyword-only dataclass."""
    return dataclass(frozen=True, eq=False, kw_only=True)(cls)


def _invalid(where: str, message: str, code: ErrorCode = ErrorCode.INVALID_FIELD) -> ProtocolError:
    return ProtocolError(code, f"{where}: {message}")


class Record:
    """Base of every message and nested record: validated at construction."""

    def __post_init__(self) -> None:
        cls = type(self)
        for name, quick, annotation, rule in _quick_checks(cls):
            given = getattr(self, name)
            value = quick(given)
            if value is _UNSURE:  # the full check decides, and words the error
                value = check_value(given, annotation, rule, f"{cls.__name__}.{name}")
            if value is not given:
                object.__setattr__(self, name, value)
        self.check()

    def check(self) -> None:
        """Cross-field checks; override and raise `ProtocolError(INVALID_FIELD, ...)`."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            _values_equal(getattr(self, name), getattr(other, name))
            for name, _, _ in record_fields(type(self))
        )

    __hash__ = None  # type: ignore[assignment]


def _values_equal(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@cache
def record_fields(cls: type) -> tuple[tuple[str, Any, Rule], ...]:
    """(name, resolved annotation, rule) for every field of a record class."""
    # Each class's annotations resolve in its own module; these names are always known.
    hints = typing.get_type_hints(cls, localns={"np": np, "Scalars": Scalars})
    return tuple(
        (f.name, hints[f.name], f.metadata.get("rule", Rule()))
        for f in dataclasses.fields(cls)
        if f.init
    )


# --------------------------------------------------------------------------- quick checks
# Every message is validated on both sides, so per-field dispatch on annotations is the
# protocol's main per-message cost. Each field gets a checker compiled once from its
# annotation and rule. It returns exactly what `check_value` would for the common valid
# cases and `_UNSURE` for anything else (errors included), so `check_value` stays the one
# definition of what is valid and how errors are worded.

_UNSURE: Any = object()
QuickCheck = Callable[[Any], Any]


@cache
def _quick_checks(cls: type) -> tuple[tuple[str, QuickCheck, Any, Rule], ...]:
    return tuple((name, _compile(annotation, rule), annotation, rule)
                 for name, annotation, rule in record_fields(cls))


def _compile(annotation: Any, rule: Rule) -> QuickCheck:
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        inner = _compile(members[0], rule) if len(members) == 1 else _unsure
        nullable = len(members) < len(typing.get_args(annotation))
        return lambda v: (None if nullable else _UNSURE) if v is None else inner(v)
    if origin is tuple:
        return _compile_tuple(typing.get_args(annotation), rule)
    if origin is Literal:
        allowed = frozenset(typing.get_args(annotation))
        return lambda v: v if type(v) in (str, int) and v in allowed else _UNSURE
    compilers = {str: _compile_str, int: _compile_int, float: _compile_float,
                 bool: lambda _: lambda v: v if type(v) is bool else _UNSURE}
    if annotation in compilers:
        return compilers[annotation](rule)
    return _unsure  # arrays, records, maps: the full check is already direct


def _unsure(_value: Any) -> Any:
    return _UNSURE


def _compile_str(rule: Rule) -> QuickCheck:
    if rule.path is not None:
        return _unsure
    pattern = re.compile(rule.pattern) if rule.pattern is not None else None
    max_len = rule.max_len

    def check(v: Any) -> Any:
        if type(v) is not str or len(v) > max_len or "\x00" in v:
            return _UNSURE
        return v if pattern is None or pattern.fullmatch(v) else _UNSURE
    return check


def _compile_int(rule: Rule) -> QuickCheck:
    low = rule.ge if rule.ge is not None else -(2**63)
    high = rule.le if rule.le is not None else 2**63 - 1
    return lambda v: v if type(v) is int and low <= v <= high else _UNSURE


def _compile_float(rule: Rule) -> QuickCheck:
    low = rule.ge if rule.ge is not None else -math.inf
    high = rule.le if rule.le is not None else math.inf

    def check(v: Any) -> Any:
        if type(v) is not float and type(v) is not int:
            return _UNSURE
        v = float(v)
        return v if math.isfinite(v) and low <= v <= high else _UNSURE
    return check


def _compile_tuple(args: tuple[Any, ...], rule: Rule) -> QuickCheck:
    if len(args) == 2 and args[1] is Ellipsis:
        item, max_items = _compile(args[0], rule), rule.max_items

        def check_items(v: Any) -> Any:
            if type(v) not in (list, tuple) or len(v) > max_items:
                return _UNSURE
            out = tuple(map(item, v))
            return _UNSURE if _UNSURE in out else out
        return check_items
    items = tuple(_compile(a, rule) for a in args)

    def check_fixed(v: Any) -> Any:
        if type(v) not in (list, tuple) or len(v) != len(items):
            return _UNSURE
        out = tuple([c(x) for c, x in zip(items, v, strict=True)])
        return _UNSURE if _UNSURE in out else out
    return check_fixed


def _is_record(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Record)


def check_value(value: Any, annotation: Any, rule: Rule, where: str) -> Any:
    """Validate (and lightly normalise: list→tuple, int→float) one value."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return _check_union(value, typing.get_args(annotation), rule, where)
    if annotation is type(None):
        if value is not None:
            raise _invalid(where, f"expected null, got {type(value).__name__}")
        return None
    if origin is Literal:
        if not isinstance(value, str | int) or value not in typing.get_args(annotation):
            raise _invalid(where, f"{value!r} is not one of {list(typing.get_args(annotation))}")
        return value
    if origin is tuple:
        return _check_tuple(value, typing.get_args(annotation), rule, where)
    if origin is dict:
        return _check_scalars(value, where)
    checker = _SCALAR_CHECKERS.get(annotation)
    if checker is not None:
        return checker(value, rule, where)
    if annotation is np.ndarray:
        return _check_array(value, rule, where)
    if _is_record(annotation):
        if not isinstance(value, annotation):
            raise _invalid(where, f"expected {annotation.__name__}, got {type(value).__name__}")
        return value
    raise TypeError(f"{where}: unsupported annotation {annotation!r}")


def _check_union(value: Any, members: tuple[Any, ...], rule: Rule, where: str) -> Any:
    if value is None:
        if type(None) in members:
            return None
        raise _invalid(where, "must not be null")
    candidates = [m for m in members if m is not type(None)]
    errors = []
    for member in candidates:
        try:
            return check_value(value, member, rule, where)
        except ProtocolError as exc:
            errors.append(exc)
    raise errors[0] if len(errors) == 1 else _invalid(where, f"unexpected {type(value).__name__}")


def _check_str(value: Any, rule: Rule, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(where, f"expected a string, got {type(value).__name__}")
    if len(value) > rule.max_len:
        raise _invalid(where, f"string of {len(value)} characters exceeds {rule.max_len}")
    if "\x00" in value:
        raise _invalid(where, "string contains a NUL character")
    if rule.pattern is not None and re.fullmatch(rule.pattern, value) is None:
        raise _invalid(where, f"{value!r} does not match {rule.pattern!r}")
    if rule.path is not None:
        check_path(value, rule.path, where)
    return value


def check_path(value: str, kind: PathKind, where: str) -> None:
    """Reject empty paths, backslashes and (for "relative") absolute paths and `..`."""
    if not value:
        raise _invalid(where, "path is empty")
    if kind == "absolute_or_relative":
        return
    if "\\" in value or value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise _invalid(where, f"path {value!r} must be relative, with '/' separators")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts) or posixpath.normpath(value) != value:
        raise _invalid(where, f"path {value!r} must not contain '..', '.' or empty parts")


def _check_int(value: Any, rule: Rule, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _invalid(where, f"expected an integer, got {type(value).__name__}")
    value = int(value)
    _check_range(value, rule, where, default_low=-(2**63), default_high=2**63 - 1)
    return value


def _check_float(value: Any, rule: Rule, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise _invalid(where, f"expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        if not rule.nonfinite:
            raise _invalid(where, f"{value} is not finite")
        return value
    _check_range(value, rule, where)
    return value


def _check_range(
    value: float, rule: Rule, where: str, default_low: float | None = None,
    default_high: float | None = None,
) -> None:
    low = rule.ge if rule.ge is not None else default_low
    high = rule.le if rule.le is not None else default_high
    if low is not None and value < low:
        raise _invalid(where, f"{value} is below the minimum {low}")
    if high is not None and value > high:
        raise _invalid(where, f"{value} is above the maximum {high}")


def _check_bool(value: Any, rule: Rule, where: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise _invalid(where, f"expected a boolean, got {type(value).__name__}")
    return bool(value)


_SCALAR_CHECKERS: dict[Any, Callable[[Any, Rule, str], Any]] = {
    str: _check_str,
    int: _check_int,
    float: _check_float,
    bool: _check_bool,
}


def _check_tuple(value: Any, args: tuple[Any, ...], rule: Rule, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise _invalid(where, f"expected a list, got {type(value).__name__}")
    if len(args) == 2 and args[1] is Ellipsis:
        if len(value) > rule.max_items:
            raise _invalid(where, f"{len(value)} items exceed the maximum {rule.max_items}")
        return tuple(check_value(v, args[0], rule, f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise _invalid(where, f"expected {len(args)} items, got {len(value)}")
    pairs = enumerate(zip(value, args, strict=True))
    return tuple(check_value(v, a, rule, f"{where}[{i}]") for i, (v, a) in pairs)


def _check_scalars(value: Any, where: str) -> dict[str, Scalar]:
    if not isinstance(value, dict):
        raise _invalid(where, f"expected a map, got {type(value).__name__}")
    if len(value) > MAX_SCALARS:
        raise _invalid(where, f"{len(value)} entries exceed the maximum {MAX_SCALARS}")
    out: dict[str, Scalar] = {}
    for key, item in value.items():
        _check_str(key, Rule(max_len=256), f"{where} key")
        inner = f"{where}[{key!r}]"
        if item is None or isinstance(item, bool):
            out[key] = item
        elif isinstance(item, int | np.integer):
            out[key] = _check_int(item, Rule(), inner)
        elif isinstance(item, float | np.floating):
            out[key] = _check_float(item, Rule(), inner)
        else:
            out[key] = _check_str(item, Rule(), inner)
    return out


def _check_array(value: Any, rule: Rule, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        message = f"expected a numpy array, got {type(value).__name__}"
        raise _invalid(where, message, ErrorCode.BAD_ARRAY)
    if value.dtype.byteorder == ">":  # the wire is little-endian: normalise once, here
        value = value.astype(value.dtype.newbyteorder("<"))
    dtype = value.dtype.str
    allowed = rule.dtypes if rule.dtypes is not None else tuple(sorted(DTYPES))
    if dtype not in DTYPES or dtype not in allowed:
        message = f"dtype {dtype} not allowed here (allowed: {list(allowed)})"
        raise _invalid(where, message, ErrorCode.BAD_ARRAY)
    _check_shape(value.shape, rule, where)
    if rule.max_bytes is not None and value.nbytes > rule.max_bytes:
        message = f"array of {value.nbytes} bytes exceeds {rule.max_bytes}"
        raise _invalid(where, message, ErrorCode.BAD_ARRAY)
    if value.dtype.kind == "f" and not rule.nonfinite and not np.isfinite(value).all():
        raise _invalid(where, "array contains NaN or inf")
    if value.dtype.kind == "b" and value.size and value.reshape(-1).view(np.uint8).max() > 1:
        raise _invalid(where, "bool array holds bytes other than 0 and 1", ErrorCode.BAD_ARRAY)
    return value


def _check_shape(shape: tuple[int, ...], rule: Rule, where: str) -> None:
    if rule.shape is not None:
        ok = len(shape) == len(rule.shape) and all(
            want is None or want == got for want, got in zip(rule.shape, shape, strict=True)
        )
        if not ok:
            expected = ["*" if d is None else d for d in rule.shape]
            message = f"shape {list(shape)} does not match {expected}"
            raise _invalid(where, message, ErrorCode.BAD_ARRAY)
    elif rule.ndim is not None and len(shape) not in rule.ndim:
        raise _invalid(where, f"rank {len(shape)} not in {list(rule.ndim)}", ErrorCode.BAD_ARRAY)
