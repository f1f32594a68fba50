"""Release profiles written as a base profile plus a delta.

A profile file may say ``base: <profile name>``: the profile of that name, in the same
directory, is resolved first (a chain of bases is allowed, a cycle is an error) and this file
is applied to it:

* ``name``, ``description`` and ``openstack_release`` are never inherited: every file says them;
* top-level mappings (``settings``, ``distro``, ``identity``, ``site_defaults``, ...) merge key
  by key, recursively; scalars and lists replace;
* ``services`` merge by ``name``: an entry naming a base service replaces the keys it gives,
  except ``files``, which merge by ``path`` (a known path is replaced in place, a new one is
  appended); an entry naming a new service is appended, or inserted right after the service
  its ``after:`` names;
* nothing inherited goes away unless ``drop`` says so, with a reason. ``drop`` mirrors the
  profile: under a mapping a key names what goes, under a list an item is named by its
  ``name`` (services), its ``path`` (files) or its value (lists of strings); the value is the
  reason (a non-empty string) or, to drop only parts of that thing, a mapping of the same
  kind. Drops apply to the base before the merge; dropping what the base lacks, or giving
  back what is dropped, is an error.

``standalone: <reason>`` marks a file without a base that differs from the others of its
family on purpose (the shipped profiles' test compares the others). ``base``, ``drop`` and
``standalone`` are gone from the resolved mapping: the image carries the resolved profile,
complete, so the appliance never needs the base file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError
from .schema import load_yaml_mapping

NEVER_INHERITED = ("name", "description", "openstack_release")
# Keys of a profile file that are not part of the profile itself.
FILE_KEYS = ("base", "drop", "standalone")

# Lists of the profile whose items a drop names (only for the field names of errors).
LIST_FIELDS = frozenset({"services", "files", "units", "packages", "databases", "queues", "components",
                         "extra_repositories", "base_packages"})

Check = Callable[[dict, str], object]


def resolve_profile_file(path: Path, check: Check | None = None) -> dict:
    """The complete profile mapping of ``path``, its bases applied.

    ``check(mapping, source)`` is called on each base's resolved mapping, so that a problem in
    a base is reported against the base's own file."""
    return _resolve(Path(path), check, ())


def profile_chain(path: Path) -> list[Path]:
    """``path`` and its bases, nearest first (the files are read, not resolved)."""
    chain = [Path(path)]
    while True:
        data = load_yaml_mapping(chain[-1])
        if data.get("base") is None:
            return chain
        base = _base_path(chain[-1], data["base"], str(chain[-1]))
        if base in chain:
            raise _cycle(chain[-1], chain + [base])
        chain.append(base)


def drop_reasons(data: dict, source: str) -> dict[tuple, str]:
    """Every drop of one profile file's mapping, by address: ``("settings", key)``,
    ``("services", name)``, ``("services", name, "files", path)``, ..."""
    spec = data.get("drop")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ConfigError(source, "drop", f"expected a mapping, got {_kind(spec)}")
    found: dict[tuple, str] = {}

    def walk(node: dict, address: tuple) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, address + (key,))
            else:
                found[address + (key,)] = _reason(value, source, _field("drop", address, key))

    walk(spec, ())
    return found


def address_text(address: tuple) -> str:
    """An address of ``drop_reasons`` as the field names of errors write it:
    ``services[nova].files[/etc/default/libvirt-guests]``."""
    return _field("", address[:-1], address[-1])


def _resolve(path: Path, check: Check | None, seen: tuple[Path, ...]) -> dict:
    source = str(path)
    data = load_yaml_mapping(path)
    if data.get("base") is None:
        for key in ("base", "drop"):
            if key in data:
                raise ConfigError(source, key, "only a file that names its base profile may say this")
        if "standalone" in data:
            _reason(data["standalone"], source, "standalone")
        return {k: v for k, v in data.items() if k not in FILE_KEYS}
    if "standalone" in data:
        raise ConfigError(source, "standalone", "a profile with a base is not standalone")
    base_path = _base_path(path, data["base"], source)
    if base_path in seen + (path,):
        raise _cycle(path, list(seen) + [path, base_path])
    merged = _resolve(base_path, check, seen + (path,))
    if check is not None:
        check(copy.deepcopy(merged), str(base_path))
    return apply_delta(merged, data, source, base_path.name)


def apply_delta(base: dict, delta: dict, source: str, base_name: str = "the base") -> dict:
    """``base`` (a resolved mapping, left unchanged) with the delta file's mapping applied."""
    for key in NEVER_INHERITED:
        if key not in delta:
            raise ConfigError(source, key, "required in every profile file (never inherited from the base)")
    result = copy.deepcopy(base)
    for key in NEVER_INHERITED:
        result.pop(key, None)
    drops = drop_reasons(delta, source)
    for address in drops:
        _drop(result, address, source, base_name)
    for key, value in delta.items():
        if key in FILE_KEYS:
            continue
        if key == "services" and isinstance(value, list) and isinstance(result.get("services"), list):
            result["services"] = _merge_services(result["services"], value, source)
        else:
            _merge_key(result, key, value, source, key)
    for address in drops:
        if _find(result, address) is not None:
            raise ConfigError(source, _field("drop", address[:-1], address[-1]),
                              f"dropped from {base_name} but given again in this file")
    return result


def _merge_key(target: dict, key: Any, value: Any, source: str, field: str) -> None:
    old = target.get(key)
    if isinstance(old, dict) and isinstance(value, dict):
        for k, v in value.items():
            _merge_key(old, k, v, source, f"{field}.{k}")
    elif value is None and old is not None:
        raise ConfigError(source, field, "null would remove the base's value; say drop: with a reason instead")
    else:
        target[key] = copy.deepcopy(value)


def _merge_services(base: list, delta: list, source: str) -> list:
    services = list(base)
    named = set()
    for i, entry in enumerate(delta):
        where = f"services[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(source, where, f"expected a mapping, got {_kind(entry)}")
        name = entry.get("name")
        if not isinstance(name, str):
            raise ConfigError(source, f"{where}.name", "required: the name of a base service or a new one")
        if name in named:
            raise ConfigError(source, f"{where}.name", f"service {name!r} is named twice in this file")
        named.add(name)
        index = _index_by(services, "name", name)
        if index is None:
            services.insert(_insert_at(services, entry, source, where), {k: copy.deepcopy(v) for k, v in entry.items()
                                                                         if k != "after"})
            continue
        if "after" in entry:
            raise ConfigError(source, f"{where}.after", f"only places a new service; {name!r} is in the base")
        updated = copy.deepcopy(services[index])
        for key, value in entry.items():
            if key == "files" and isinstance(value, list) and isinstance(updated.get("files"), list):
                updated["files"] = _merge_files(updated["files"], value, source, f"{where}.files")
            elif value is None and updated.get(key) is not None:
                raise ConfigError(source, f"{where}.{key}",
                                  "null would remove the base's value; say drop: with a reason instead")
            else:
                updated[key] = copy.deepcopy(value)
        services[index] = updated
    return services


def _index_by(items: list, key: str, value) -> int | None:
    """The index of the first mapping in ``items`` whose ``key`` is ``value``, or None."""
    return next((i for i, item in enumerate(items) if isinstance(item, dict) and item.get(key) == value), None)


def _insert_at(services: list, entry: dict, source: str, where: str) -> int:
    after = entry.get("after")
    if after is None:
        return len(services)
    index = _index_by(services, "name", after)
    if index is None:
        raise ConfigError(source, f"{where}.after", f"no service {after!r} to follow")
    return index + 1


def _merge_files(base: list, delta: list, source: str, field: str) -> list:
    files = list(base)
    given = set()
    for j, entry in enumerate(delta):
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str):
            raise ConfigError(source, f"{field}[{j}].path", "required: files merge by path")
        if path in given:
            raise ConfigError(source, f"{field}[{j}].path", f"{path} is given twice in this file")
        given.add(path)
        index = _index_by(files, "path", path)
        if index is None:
            files.append(copy.deepcopy(entry))
        else:
            files[index] = copy.deepcopy(entry)
    return files


def _drop(result: dict, address: tuple, source: str, base_name: str) -> None:
    """Remove the thing at ``address`` from ``result``; an error when it is not there."""
    field = _field("drop", address[:-1], address[-1])
    parent = _find(result, address[:-1]) if address[:-1] else result
    key = address[-1]
    if len(address) == 1 and key in NEVER_INHERITED:
        raise ConfigError(source, field, "is never inherited: there is nothing to drop")
    if isinstance(parent, dict) and key in parent:
        del parent[key]
        return
    if isinstance(parent, list) and _item_index(parent, key) is not None:
        del parent[_item_index(parent, key)]
        return
    if isinstance(parent, list) and not any(isinstance(item, str) or _item_key(item) is not None for item in parent):
        raise ConfigError(source, field, "its items have no name or path: give the whole list in this file instead")
    shown = _field("", address[:-1], key)
    raise ConfigError(source, field, f"{base_name} has no {shown} to drop")


def _find(node: Any, address: tuple) -> Any:
    """The thing at ``address``, or None."""
    for key in address:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list):
            index = _item_index(node, key)
            node = None if index is None else node[index]
        else:
            return None
        if node is None:
            return None
    return node


def _item_key(item: Any) -> Any:
    if isinstance(item, dict):
        return item.get("name", item.get("path"))
    return None


def _item_index(items: list, key: Any) -> int | None:
    for i, item in enumerate(items):
        if (_item_key(item) if isinstance(item, dict) else item) == key:
            return i
    return None


def _base_path(path: Path, base: Any, source: str) -> Path:
    if not isinstance(base, str) or not base or "/" in base or base.startswith("."):
        raise ConfigError(source, "base", f"expected the name of a profile in the same directory, got {base!r}")
    candidate = path.parent / f"{base}.yaml"
    if not candidate.is_file():
        raise ConfigError(source, "base", f"no profile {base!r} (no {candidate.name} beside this file)")
    return candidate


def _cycle(path: Path, chain: list[Path]) -> ConfigError:
    return ConfigError(str(path), "base", "base profiles form a cycle: " + " -> ".join(p.name for p in chain))


def _reason(value: Any, source: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(source, field, f"expected the reason (a non-empty string), got {_kind(value)}")
    return value


def _field(prefix: str, address: tuple, key: Any) -> str:
    """``drop.settings.x``, ``drop.services[nova].files[/etc/x]``: mapping keys dotted, the
    items of a list (named by name, path or value) in brackets."""
    text, previous = prefix, None
    for part in address + (key,):
        if previous in LIST_FIELDS:
            text = f"{text}[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
        previous = part
    return text


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f"string {value!r}"
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)
