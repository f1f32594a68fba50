"""Typed configuration objects from plain YAML mappings.

Profiles and site configs are frozen dataclasses. ``from_mapping`` turns a parsed YAML
mapping into one, checking every key against the dataclass fields and every value against
its annotation, so that a typo or a wrong type is reported with the dotted field name
instead of surfacing later as a KeyError deep in a template.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")

_TYPE_WORDS = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


# Site files and key files are a few hundred bytes; profiles a few KiB. Anything larger is
# not what the operator meant to give (and /dev/zero would never end).
MAX_INPUT_BYTES = 256 * 1024


def read_text_input(path: Path, source: str, field: str = "", *, limit: int = MAX_INPUT_BYTES,
                    show_path: bool = True) -> str:
    """The contents of a regular file of at most ``limit`` bytes, as UTF-8 text.

    Raises ConfigError (``source: field: problem``, one line) for a missing file, a directory,
    a device, a FIFO or socket, a file over ``limit`` bytes, a NUL byte (binary) or bytes that
    are not UTF-8. Opened non-blocking, so a FIFO without a writer cannot hang the caller.
    """
    shown = str(path)
    prefix = f"{shown}: " if show_path and shown != source else ""

    def refuse(problem: str):
        raise ConfigError(source, field, prefix + problem)

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        refuse("file not found")
    except OSError as exc:
        refuse(f"cannot be read ({exc.strerror})")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            refuse(f"expected a regular file, got {_file_kind(info.st_mode)}")
        if info.st_size > limit:
            refuse(f"is {info.st_size} bytes; expected at most {limit}")
        chunks, size = [], 0
        while size <= limit:  # the file may grow after fstat: never read more than limit + 1
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        refuse(f"cannot be read ({exc.strerror})")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        refuse(f"is more than {limit} bytes")
    if b"\0" in data:
        refuse("is a binary file (it holds NUL bytes); expected UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        refuse(f"is not UTF-8 text (byte {exc.start})")


def _file_kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def load_yaml_mapping(path: Path) -> dict:
    """Read a YAML file that must hold a mapping (an empty file is an empty mapping)."""
    source = str(path)
    text = read_text_input(path, source)
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
