"""The build host's catalogue of release profiles: ``profiles/<name>.yaml`` in the repository.

The profile model and its checks are the appliance's own (``appliance.profiles``), and so is
the resolution of a delta profile's base (``appliance.profile_delta``); this module finds
profiles by name and writes the resolved profile the image carries. Errors: an unknown name
raises ApplianceError listing the known ones.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from appliance.errors import ApplianceError
from appliance.profile_delta import profile_chain, resolve_profile_file
from appliance.profiles import Profile, load_profile_file, parse_profile

PROFILE_DIR = Path(__file__).resolve().parents[1] / "profiles"
DEFAULT_PROFILE = "trixie-epoxy"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(name: str) -> Path:
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_profiles())
        raise ApplianceError(f"unknown profile {name!r} (available: {known})")
    return path


def load_profile(name: str = DEFAULT_PROFILE) -> Profile:
    return load_profile_file(profile_path(name))


def resolved_profile_yaml(name: str) -> str:
    """The profile as the image carries it (``/usr/share/appliance/profile.yaml``): one
    complete mapping, its bases applied, which ``parse_profile`` reads without the base file."""
    path = profile_path(name)
    data = resolve_profile_file(path, check=parse_profile)
    parse_profile(data, str(path))
    files = " <- ".join(p.name for p in profile_chain(path))
    header = f"# Release profile {name}, resolved from profiles/ ({files}) by the build; do not edit.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)


def write_resolved_profile(name: str, dest: Path) -> Path:
    dest.write_text(resolved_profile_yaml(name), encoding="utf-8")
    return dest
