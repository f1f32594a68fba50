"""Leave no loop device, mount or partition link behind, also after a failed build.

diskimage-builder cleans up after itself when a hook fails, but not when it is killed, and
a leaked loop device stays until reboot (this host has few). The driver calls
``release_build_resources`` for its work directory in a ``finally``: it unmounts whatever
is mounted under it (deepest first) and detaches loop devices whose backing file lies
under it, with their partitions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoopDevice:
    name: str  # /dev/loop0
    back_file: str  # as the kernel reports it; may end in " (deleted)"


def _unescape_mountinfo(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts_under(root: Path, mountinfo: str | None = None) -> list[str]:
    """Mount points at or below root, deepest first (the order to unmount them)."""
    return [point for _, point in mount_sources_under(root, mountinfo)]


def mount_sources_under(root: Path, mountinfo: str | None = None) -> list[tuple[str, str]]:
    """(source, mount point) of every mount at or below root, deepest first; the source is
    what was mounted (a device such as /dev/loop1, or "overlay"), as proc(5)'s mountinfo
    gives it after the " - " separator."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    prefix = str(root).rstrip("/")
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            after = fields[fields.index("-") + 1:] if "-" in fields else []
            found.append((_unescape_mountinfo(after[1]) if len(after) > 1 else "", point))
    # Stacked mounts on one point are unmounted one by one: keep duplicates.
    return sorted(found, key=lambda m: m[1].count("/"), reverse=True)


def parse_losetup_json(text: str) -> list[LoopDevice]:
    if not text.strip():
        return []
    devices = json.loads(text).get("loopdevices", [])
    return [LoopDevice(d["name"], d.get("back-file") or "") for d in devices]


def loop_devices() -> list[LoopDevice]:
    done = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], capture_output=True, text=True)
    return parse_losetup_json(done.stdout) if done.returncode == 0 else []


def loops_backed_under(root: Path, devices: list[LoopDevice]) -> list[LoopDevice]:
    prefix = str(root).rstrip("/") + "/"
    return [d for d in devices if d.back_file.removesuffix(" (deleted)").startswith(prefix)]


def _retry(cmd: list[str], attempts: int = 10, delay: float = 0.5) -> bool:
    for attempt in range(attempts):
        if subprocess.run(cmd, capture_output=True, text=True).returncode == 0:
            return True
        if attempt + 1 < attempts:
            time.sleep(delay)
    return False


def processes_rooted_under(root: Path, proc: Path = Path("/proc")) -> list[int]:
    """PIDs whose root directory is inside root: processes left in a build chroot."""
    prefix = str(root).rstrip("/") + "/"
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            target = os.readlink(entry / "root")
        except OSError:
            continue
        if target.startswith(prefix):
            pids.append(int(entry.name))
    return pids


def release_build_resources(root: Path, log=print) -> list[str]:
    """Unmount and detach everything this build left under root; returns what was done.

    Order matters: the loop devices are listed while their backing files' paths still
    resolve, the image mounts go before the loop devices, and the tmpfs holding the
    backing files goes last (it stays busy while a loop device uses a file on it; a lazy
    unmount would hide the path and orphan the device).
    """
    actions: list[str] = []
    # Chroot processes outliving a killed DIB hold its mounts (and its namespace) alive.
    for pid in processes_rooted_under(root):
        try:
            os.kill(pid, signal.SIGKILL)
            actions.append(f"kill {pid} (running in a build chroot)")
        except ProcessLookupError:
            pass
    if actions:
        time.sleep(1)
    loops = loops_backed_under(root, loop_devices())
    busy = []
    for point in mounts_under(root):
        if subprocess.run(["umount", point], capture_output=True).returncode == 0:
            actions.append(f"umount {point}")
        else:
            busy.append(point)
    for device in loops:
        name = Path(device.name).name
        for link in Path("/dev/mapper").glob(f"{name}p*"):
            if link.is_symlink():
                link.unlink()
        # Partitions may stay busy for a moment after their umount.
        if any(Path(f"/sys/block/{name}").glob(f"{name}p*")):
            _retry(["partx", "-d", device.name])
        _retry(["losetup", "-d", device.name])
        # A device still in use is only marked for autoclear: wait for it to really go.
        for _ in range(20):
            if device.name not in {d.name for d in loop_devices()}:
                break
            time.sleep(0.5)
        else:
            log(f"[cleanup] WARNING: {device.name} is still in use; it detaches when released")
        actions.append(f"losetup -d {device.name} ({device.back_file})")
    for point in busy:
        if not _retry(["umount", point], attempts=5):
            subprocess.run(["umount", "--lazy", point], capture_output=True)
            point += " (lazy)"
        actions.append(f"umount {point}")
    for action in actions:
        log(f"[cleanup] {action}")
    return actions
