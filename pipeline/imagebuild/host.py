"""Host prerequisites of an image build: tools diskimage-builder calls, and device-mapper.

diskimage-builder shells out to a handful of tools and runs several of them through sudo.
``ensure_host_prerequisites`` installs what is missing with apt-get and says exactly what is
still missing when it cannot. On kernels without device-mapper (some micro-VMs and
containers) the ``kpartx``/``dmsetup`` stand-ins kept in ``shims/`` go first on the build's
own PATH (``HostReport.tool_dirs``), never into the host's directories; a ``sudo`` stand-in
beside them runs diskimage-builder's ``sudo kpartx`` as root with that PATH (the real sudo's
secure_path would not find them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from appliance.errors import ApplianceError

SHIM_DIR = Path(__file__).with_name("shims")
# Where earlier versions installed the stand-ins; ours found there are removed.
SHIM_TARGET_DIR = Path("/usr/local/sbin")
# Our shims carry this text, so they can be told apart from an admin's own scripts (the
# package's name is left out: shims installed before pipeline/build was renamed say
# "installed by pipeline.build.host").
SHIM_MARKER = "installed by pipeline."

# command -> Debian package providing it. Commands, not packages, are checked, so a tool
# installed some other way counts too.
BUILD_TOOLS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "sgdisk": "gdisk",
    "mkfs.vfat": "dosfstools",
    "mksquashfs": "squashfs-tools",
    "sudo": "sudo",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "zstd": "zstd",
    "partx": "util-linux",
    "fstrim": "util-linux",
    "losetup": "mount",
    "unshare": "util-linux",
    "chroot": "coreutils",
    "tar": "tar",
    "gzip": "gzip",
}
# Only needed where the kernel has device-mapper; elsewhere the shims stand in.
DEVICE_MAPPER_TOOLS: dict[str, str] = {"kpartx": "kpartx", "dmsetup": "dmsetup"}


@dataclass
class HostReport:
    device_mapper: bool
    shims_removed: list[str] = field(default_factory=list)
    packages_installed: list[str] = field(default_factory=list)

    @property
    def tool_dirs(self) -> list[str]:
        """Directories to put first on diskimage-builder's PATH: the device-mapper stand-ins
        (with their sudo) where the kernel has no device-mapper, else none."""
        return [] if self.device_mapper else [str(SHIM_DIR)]


def kernel_has_device_mapper(proc_misc: Path = Path("/proc/misc"), dm_module: Path = Path("/sys/module/dm_mod")) -> bool:
    """True when device-mapper is built in or loaded (it registers a misc device)."""
    if dm_module.exists():
        return True
    try:
        return any(line.split()[-1:] == ["device-mapper"] for line in proc_misc.read_text().splitlines())
    except OSError:
        return False


def _try_load_device_mapper() -> bool:
    """Load dm_mod when it is a module that is merely not loaded yet."""
    if kernel_has_device_mapper():
        return True
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "-q", "dm_mod"], check=False, capture_output=True)
    return kernel_has_device_mapper()


def required_tools(device_mapper: bool) -> dict[str, str]:
    tools = dict(BUILD_TOOLS)
    if device_mapper:
        tools.update(DEVICE_MAPPER_TOOLS)
    return tools


def missing_tools(tools: dict[str, str], which: Callable[[str], str | None] = shutil.which) -> dict[str, str]:
    # Root's tools live in sbin directories that a non-root PATH may lack.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return {cmd: pkg for cmd, pkg in tools.items() if not which_in(cmd, path, which)}


def which_in(cmd: str, path: str, which: Callable[..., str | None]) -> str | None:
    try:
        return which(cmd, path=path)
    except TypeError:  # a test double that takes only the command
        return which(cmd)


def describe_missing(missing: dict[str, str]) -> str:
    packages = sorted(set(missing.values()))
    commands = ", ".join(sorted(missing))
    return f"missing build tools: {commands} (Debian packages: {' '.join(packages)})"


def _privileged(cmd: list[str]) -> list[str]:
    return cmd if os.geteuid() == 0 else ["sudo", "-n", *cmd]


def apt_install(packages: list[str], log: Callable[[str], None]) -> None:
    if not shutil.which("apt-get"):
        raise ApplianceError("no apt-get on this host; install them by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = _privileged(["apt-get", "install", "-y", "--no-install-recommends", *packages])
    log(f"[host] installing {' '.join(packages)}")
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        # A fresh host may have no package lists yet: update once and retry.
        subprocess.run(_privileged(["apt-get", "update"]), env=env, capture_output=True, text=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ApplianceError(f"apt-get install {' '.join(packages)} failed:\n{tail}")


def _is_our_shim(path: Path) -> bool:
    try:
        return SHIM_MARKER in path.read_text(errors="replace")
    except OSError:
        return False


def remove_shims(target_dir: Path = SHIM_TARGET_DIR, shim_dir: Path = SHIM_DIR) -> list[str]:
    """On a host that has device-mapper after all, the real tools must win."""
    removed = []
    for shim in shim_dir.iterdir():
        target = target_dir / shim.name
        if target.exists() and _is_our_shim(target):
            target.unlink()
            removed.append(str(target))
    return removed


def ensure_host_prerequisites(log: Callable[[str], None] = print, *, install: bool = True) -> HostReport:
    """Make this host able to run diskimage-builder, or say exactly what is missing."""
    device_mapper = _try_load_device_mapper()
    report = HostReport(device_mapper=device_mapper)
    tools = required_tools(device_mapper)
    missing = missing_tools(tools)
    if missing and install:
        packages = sorted(set(missing.values()))
        apt_install(packages, log)
        report.packages_installed = packages
        missing = missing_tools(tools)
    if missing:
        raise ApplianceError(describe_missing(missing))

    report.shims_removed = remove_shims()
    if report.shims_removed:
        log(f"[host] removed stand-ins an earlier build installed: {', '.join(report.shims_removed)}")
    if device_mapper:
        if not Path("/dev/mapper/control").exists():
            subprocess.run(_privileged(["dmsetup", "mknodes"]), check=False, capture_output=True)
    elif os.geteuid() != 0:
        raise ApplianceError("this kernel has no device-mapper: build as root, so that diskimage-builder's "
                             f"kpartx and dmsetup calls reach the stand-ins in {SHIM_DIR} on the build's PATH")
    else:
        log(f"[host] no device-mapper in this kernel: kpartx and dmsetup stand-ins from {SHIM_DIR} on the build's PATH")
    return report
