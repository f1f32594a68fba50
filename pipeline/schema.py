"""Typed configuration objects from plain YAML mappings.

Profiles and site configs are frozen dataclasses. ``from_mapping`` turns a parsed YAML
mapping into one, checking every key against the dataclass fields and every value against
its annotation, so that a typo or a wrong type is reported with the dotted field name
instead of surfacing later as a KeyError deep in a template.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")

_TYPE_WORDS = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


def load_yaml_mapping(path: Path) -> dict:
    """Read a YAML file that must hold a mapping (an empty file is an empty mapping)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, "", f"malformed YAML: {where}{problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", f"expected a mapping at the top level, got {_describe(data)}")
    return data


def from_mapping(cls: type[T], data: Any, source: str, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, reporting errors as ``source: field: problem``."""
    if not isinstance(data, dict):
        raise ConfigError(source, prefix, f"expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ConfigError(source, _join(prefix, unknown[0]), f"unknown key (allowed here: {allowed})")
    values = {}
    for name, field in fields.items():
        dotted = _join(prefix, name)
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(source, dotted, "required key is missing")
            continue
        values[name] = convert(hints[name], data[name], source, dotted)
    return cls(**values)


def convert(annotation: Any, value: Any, source: str, dotted: str) -> Any:
    """Check ``value`` against a type annotation and convert containers to immutable ones."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return convert(inner[0], value, source, dotted)
        if not all(a in _TYPE_WORDS for a in inner):
            raise TypeError(f"unsupported union {annotation!r}")
        for scalar in inner:
            try:
                return convert(scalar, value, source, dotted)
            except ConfigError:
                pass
        expected = " or ".join(_TYPE_WORDS[a] for a in inner)
        raise ConfigError(source, dotted, f"expected {expected}, got {_describe(value)}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(source, dotted, f"expected a list, got {_describe(value)}")
        item_type = args[0]
        return tuple(convert(item_type, item, source, f"{dotted}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, dotted, f"expected a mapping, got {_describe(value)}")
        key_type, value_type = args
        return {
            convert(key_type, k, source, dotted): convert(value_type, v, source, _join(dotted, str(k)))
            for k, v in value.items()
        }
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, source, dotted)
    if annotation in _TYPE_WORDS:
        # bool is an int in Python; YAML's `yes` must not pass for a port number.
        if isinstance(value, annotation) and not (annotation is int and isinstance(value, bool)):
            return value
        if annotation is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(source, dotted, f"expected {_TYPE_WORDS[annotation]}, got {_describe(value)}")
    raise TypeError(f"unsupported annotation {annotation!r} for {dotted}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
