"""The appliance's secrets: which exist, placeholders for previews, generation, storage.

Real secrets are generated on the appliance at first boot (never at build time), kept in
one 0600 file, and never logged or passed on a command line.
"""

from __future__ import annotations

import secrets as random_source  # the standard library module
import string
from pathlib import Path

import yaml

from .files import atomic_write
from .profiles import Profile

_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 32
PLACEHOLDER_PREFIX = "PLACEHOLDER-"


def secret_names(profile: Profile) -> list[str]:
    """Every secret the profile's services need, in a stable order."""
    names = ["admin_password", "lxc_password", "rabbitmq_password", "metadata_secret"]
    if profile.has_service("rabbitmq"):
        # The Erlang cookie: whoever has it (and reaches the distribution port) runs code
        # as RabbitMQ. Generated here, not by Erlang at first start (a weak generator).
        names.append("erlang_cookie")
    for svc in profile.services:
        if svc.db_user:
            names.append(f"{svc.db_user}_db_password")
        if svc.service_user:
            names.append(f"{svc.service_user}_password")
        names.extend(svc.secrets)
    return list(dict.fromkeys(names))


def placeholder_secrets(profile: Profile) -> dict[str, str]:
    """Obviously fake values, for rendering a preview on the build host."""
    return {name: f"{PLACEHOLDER_PREFIX}{name}" for name in secret_names(profile)}


def generate_secret() -> str:
    return "".join(random_source.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def complete_secrets(profile: Profile, known: dict[str, str], fixed: dict[str, str]) -> dict[str, str]:
    """Keep what exists, apply the site's fixed values, generate the rest."""
    result = {}
    for name in secret_names(profile):
        result[name] = fixed.get(name) or known.get(name) or generate_secret()
    return result


def load_secret_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in data.items()}


def write_secret_file(path: Path, values: dict[str, str]) -> None:
    """Mode 0600 from the first byte: there is no moment when it is readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, yaml.safe_dump(values, default_flow_style=False, sort_keys=True), mode=0o600)
