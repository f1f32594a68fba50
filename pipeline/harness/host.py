"""Host tools the harness needs, installed with apt when missing (the same way the build
installs its own prerequisites)."""

from __future__ import annotations

from ..imagebuild.host import apt_install, missing_tools


def ensure_commands(commands: dict[str, str], log=print) -> None:
    """``commands`` maps a command to the Debian package that provides it."""
    missing = missing_tools(commands)
    if missing:
        apt_install(sorted(set(missing.values())), log)
