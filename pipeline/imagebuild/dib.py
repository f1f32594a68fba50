"""Running disk-image-create, with its whole output in the build log."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

from appliance.errors import ApplianceError


def disk_image_create() -> str:
    """The disk-image-create next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("disk-image-create")
    if beside.exists():
        return str(beside)
    found = shutil.which("disk-image-create")
    if not found:
        raise ApplianceError("disk-image-create not found: install diskimage-builder into this environment (pip install diskimage-builder)")
    return found


def dib_version() -> str:
    try:
        from diskimage_builder import version

        return version.version_info.version_string()
    except Exception:  # an odd install must not stop a build
        return "unknown"


def build_environment(extra: Mapping[str, str], tool_dirs: Sequence[str] = ()) -> dict[str, str]:
    """The environment disk-image-create runs in: ``tool_dirs`` first on PATH (the host's
    stand-ins, HostReport.tool_dirs), then the interpreter's bin so that DIB finds its own
    helpers, then root's usual directories; ``extra`` over the rest."""
    env = dict(os.environ)
    path = [*tool_dirs, str(Path(sys.executable).parent), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
            "/sbin", "/bin"]
    env["PATH"] = ":".join(dict.fromkeys(path + env.get("PATH", "").split(":")))
    env.update(extra)
    return env


def _mount_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _namespace_of(pid: int, wait_s: float = 5.0) -> str | None:
    """The private mount namespace `unshare` makes for pid, once it has made it."""
    ours = _mount_namespace("self")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        theirs = _mount_namespace(pid)
        if theirs is None:
            return None  # already gone
        if theirs != ours:
            return theirs
        time.sleep(0.02)
    return None


def end_namespace(namespace: str, wait_s: float = 10.0) -> list[int]:
    """SIGKILL every process in that mount namespace and wait until none is left."""
    killed: list[int] = []
    deadline = time.monotonic() + wait_s
    while True:
        members = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _mount_namespace(p.name) == namespace]
        if not members or time.monotonic() > deadline:
            return killed
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def run_disk_image_create(args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
    """Run DIB to completion, appending its output to log_path; raise on failure.

    DIB traps its own failures and unmounts what it mounted; when we are interrupted we
    pass SIGTERM on and wait, so that its trap can still run.
    """
    # A private mount namespace: DIB's mounts (the image partition above all) stay
    # invisible to the rest of the host. Otherwise any namespace another process creates
    # meanwhile (a container start, libvirt-lxc) copies them and keeps the partition busy,
    # and DIB's `kpartx -d` fails. The mounts also vanish with the namespace if DIB dies.
    command = ["unshare", "--mount", "--propagation", "private", disk_image_create(), *args]
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(command) + "\n").encode())
        log.flush()
        process = subprocess.Popen(command, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        namespace = _namespace_of(process.pid)
        try:
            code = process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            raise
        finally:
            # Whatever outlived DIB in its namespace keeps the image mounted there (and its
            # loop device busy): end it, so the kernel drops the namespace and its mounts.
            if namespace:
                end_namespace(namespace)
    if code != 0:
        raise ApplianceError(f"disk-image-create exited with status {code}")
