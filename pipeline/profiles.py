"""The build host's catalogue of release profiles: ``profiles/<name>.yaml`` in the repository.

The profile model and its checks are the appliance's own (``appliance.profiles``); this module
only finds profiles by name. Errors: an unknown name raises ApplianceError listing the known ones.
"""

from __future__ import annotations

from pathlib import Path

from appliance.errors import ApplianceError
from appliance.profiles import Profile, load_profile_file

PROFILE_DIR = Path(__file__).resolve().parents[1] / "profiles"
DEFAULT_PROFILE = "bookworm-zed"


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
