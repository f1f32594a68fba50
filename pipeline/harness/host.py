"""Host tools the harness needs, installed with apt when missing."""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import ApplianceError


def ensure_commands(commands: dict[str, str]) -> None:
    """``commands`` maps a command to the Debian package that provides it."""
    missing = sorted({pkg for cmd, pkg in commands.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ApplianceError(f"missing host packages: {' '.join(missing)} (install them with apt-get as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in (["apt-get", "install", "-y", "-qq", *missing], None):
        if attempt is None:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            attempt = ["apt-get", "install", "-y", "-qq", *missing]
        if subprocess.run(attempt, env=env, capture_output=True).returncode == 0:
            return
    raise ApplianceError(f"could not install host packages: {' '.join(missing)} (apt-get install failed)")
