"""Typed build settings, and the diskimage-builder environment derived from a profile.

Everything here is pure: no subprocesses, no file writes. The driver turns a profile plus
``BuildSettings`` into element lists and environment variables, which makes the mapping from
profile data to elements testable without building anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from appliance.profiles import Profile, Service

REPO_ROOT = Path(__file__).resolve().parents[2]
ELEMENTS_DIR = REPO_ROOT / "elements"

# Service name in the profile -> element that installs it. A service without packages needs
# no element.
SERVICE_ELEMENTS: dict[str, str] = {
    "host": "appliance-host",
    "zram": "appliance-zram",
    "mariadb": "appliance-mariadb",
    "rabbitmq": "appliance-rabbitmq",
    "memcached": "appliance-memcached",
    "keystone": "appliance-keystone",
    "glance": "appliance-glance",
    "placement": "appliance-placement",
    "nova": "appliance-nova",
    "neutron": "appliance-neutron",
    "ovn": "appliance-ovn",
    "dashboard": "appliance-dashboard",
    "client": "appliance-openstack-client",
}

# The LXC guest is built from these alone (with `disk-image-create -n`: no base element).
LXC_GUEST_ELEMENTS = ("lxc-guest-debootstrap", "lxc-guest-systemd", "lxc-guest-ssh", "lxc-guest-cloud-init", "lxc-guest-trim")
# cloud-init brings python3; sudo is only its Recommends, but the default user needs it.
# python3-cffi-backend: debootstrap cannot resolve the virtual package python3-cryptography
# depends on (python3-cffi-backend-api-min), which provides it. dbus: cloud-init 24+ (Debian 13)
# asks systemd over D-Bus in `cloud-init status`, which waits for ever without it for a
# non-root user (the login user); Debian's cloud images ship it.
LXC_GUEST_PACKAGES = ("systemd-sysv", "openssh-server", "iproute2", "ca-certificates", "cloud-init", "python3-cffi-backend", "sudo",
                      "dbus")


def _env_path(name: str, default: str) -> Path:
    return Path(os.environ.get(name) or default)


def _env_words(name: str) -> tuple[str, ...]:
    return tuple(os.environ.get(name, "").replace(":", " ").split())


@dataclass(frozen=True)
class BuildSettings:
    """Where a build works and caches, and what it may add. Defaults suit this host."""

    # DIB's TMP_DIR and our stage directories: never inside the repository.
    work_dir: Path = field(default_factory=lambda: _env_path("APPLIANCE_BUILD_WORK_DIR", "/var/tmp/appliance-build/work"))
    # DIB_IMAGE_CACHE: debootstrap tarballs, the apt archive cache, LXC rootfs images.
    cache_dir: Path = field(default_factory=lambda: _env_path("APPLIANCE_DIB_CACHE", "/var/cache/appliance-dib"))
    image_types: tuple[str, ...] = ("qcow2", "raw")
    # Test hooks: extra elements (e.g. one that fails on purpose) and where they live.
    extra_elements: tuple[str, ...] = field(default_factory=lambda: _env_words("APPLIANCE_EXTRA_ELEMENTS"))
    extra_elements_path: tuple[str, ...] = field(default_factory=lambda: _env_words("APPLIANCE_EXTRA_ELEMENTS_PATH"))
    # The same for the LXC guest build (its inputs key includes them).
    lxc_extra_elements: tuple[str, ...] = field(default_factory=lambda: _env_words("APPLIANCE_LXC_EXTRA_ELEMENTS"))
    # Virtual size of the guest filesystem; Nova grows it to the flavor's disk.
    lxc_image_size_gb: float = 0.6
    lxc_journal_mb: int = 8
    # 19 saves 4 MB of 35 over 12 but costs 25 s of a 2-core build: not worth it.
    zstd_level: int = 12
    mirror_timeout_s: float = 5.0

    @property
    def dib_tmp_dir(self) -> Path:
        return self.work_dir / "tmp"

    def elements_path(self) -> str:
        return ":".join([str(ELEMENTS_DIR), *self.extra_elements_path])


def env_var_name(kind: str, service: str) -> str:
    """APPLIANCE_PACKAGES_NOVA for ("PACKAGES", "nova"); '-' becomes '_'."""
    return f"APPLIANCE_{kind}_{service.upper().replace('-', '_')}"


def installed_services(profile: Profile) -> list[Service]:
    """Services that have an element, in profile order; unknown ones are an error."""
    services = []
    for svc in profile.services:
        if not svc.packages:
            continue
        if svc.name not in SERVICE_ELEMENTS:
            raise ValueError(f"profile {profile.name}: service {svc.name!r} has packages but no element (known: {', '.join(SERVICE_ELEMENTS)})")
        services.append(svc)
    return services


def appliance_elements(profile: Profile, settings: BuildSettings) -> list[str]:
    elements = ["vm", "block-device-mbr", profile.distro.dib_element, "growroot", "appliance-apt", "appliance-network",
                "appliance-efi", "appliance-thp", "appliance-service-base"]
    elements += [SERVICE_ELEMENTS[svc.name] for svc in installed_services(profile)]
    elements += ["appliance-rpc-reply"]
    elements += ["appliance-firstboot", "appliance-overlays", "appliance-migrate", "appliance-lxc-image",
                 "appliance-manifest"]
    elements += list(settings.extra_elements)
    return elements


def effective_mirror(profile: Profile, environ: Mapping[str, str]) -> str:
    """The operator's DIB_DISTRIBUTION_MIRROR wins over the profile's."""
    return environ.get("DIB_DISTRIBUTION_MIRROR") or profile.distro.mirror


def effective_extra_repositories(profile: Profile, environ: Mapping[str, str]) -> list[str]:
    """Extra 'deb URL suite components' lines; APPLIANCE_CLOUD_ARCHIVE_MIRROR replaces the URL."""
    override = environ.get("APPLIANCE_CLOUD_ARCHIVE_MIRROR")
    lines = []
    for line in profile.distro.extra_repositories:
        words = line.split()
        if override and len(words) >= 3:
            words[1] = override
        lines.append(" ".join(words))
    return lines


def distro_env(profile: Profile, environ: Mapping[str, str]) -> dict[str, str]:
    distro = profile.distro
    env = {
        "DIB_RELEASE": distro.release,
        "DIB_DISTRIBUTION_MIRROR": effective_mirror(profile, environ),
        "DIB_DEBIAN_COMPONENTS": ",".join(distro.components),
    }
    if distro.family == "debian":
        security = environ.get("DIB_DEBIAN_SECURITY_MIRROR") or distro.security_mirror
        if security:
            env["DIB_DEBIAN_SECURITY_MIRROR"] = security
    return env


def common_env(settings: BuildSettings) -> dict[str, str]:
    return {
        "TMP_DIR": str(settings.dib_tmp_dir),
        "DIB_IMAGE_CACHE": str(settings.cache_dir),
        "DIB_DEBOOTSTRAP_CACHE": "1",
        "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "1",
        "DIB_APT_LOCAL_CACHE": "1",
        # Build on disk, not on tmpfs: DIB runs in a private mount namespace, and a loop
        # device's backing file on a tmpfs that only existed there could no longer be
        # traced to this build (its path becomes "/image0.raw") if DIB died.
        "DIB_NO_TMPFS": "1",
        "ELEMENTS_PATH": settings.elements_path(),
        # DIB answers for its own log; we keep the full output in build.log.
        "DIB_SHOW_IMAGE_USAGE": "1",
        # Every phase script traced into build.log (the elements follow DIB's preamble); a
        # failed build is read there.
        "DIB_DEBUG_TRACE": os.environ.get("DIB_DEBUG_TRACE", "1"),
    }


def appliance_env(profile: Profile, settings: BuildSettings, *, profile_file: Path, lxc_image: Path,
                  lxc_image_size: int, report_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    env = common_env(settings)
    env.update(distro_env(profile, environ))
    env.update({
        "DIB_GRUB_TIMEOUT": "0",
        # BIOS and UEFI: an EFI system partition beside the root (elements/appliance-efi).
        "DIB_BLOCK_DEVICE_CONFIG": f"file://{ELEMENTS_DIR / 'appliance-efi' / 'block-device-appliance.yaml'}",
        "APPLIANCE_SOURCE_DIR": str(REPO_ROOT),
        "APPLIANCE_PROFILE_FILE": str(profile_file),
        "APPLIANCE_LXC_ROOTFS_IMAGE": str(lxc_image),
        "APPLIANCE_LXC_ROOTFS_SIZE": str(lxc_image_size),
        "APPLIANCE_BUILD_REPORT_DIR": str(report_dir),
        "APPLIANCE_PACKAGES_BASE": " ".join(profile.distro.base_packages),
        "APPLIANCE_APT_EXTRA_REPOSITORIES": "\n".join(effective_extra_repositories(profile, environ)),
    })
    for svc in installed_services(profile):
        env[env_var_name("PACKAGES", svc.name)] = " ".join(svc.packages)
        env[env_var_name("UNITS", svc.name)] = " ".join(svc.units)
    return env


def lxc_guest_env(profile: Profile, settings: BuildSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The guest is Debian whatever the appliance runs: bookworm from the Debian mirror.

    An Ubuntu profile's mirror cannot serve a Debian debootstrap, so for non-Debian
    profiles the guest uses DIB_LXC_GUEST_MIRROR (default: Debian's archive).
    """
    env = common_env(settings)
    if profile.distro.family == "debian":
        release, mirror = profile.distro.release, effective_mirror(profile, environ)
    else:
        release = "bookworm"
        mirror = "http://deb.debian.org/debian"
    env.update({
        "DIB_LXC_GUEST_RELEASE": environ.get("DIB_LXC_GUEST_RELEASE") or release,
        "DIB_LXC_GUEST_MIRROR": environ.get("DIB_LXC_GUEST_MIRROR") or mirror,
        "DIB_LXC_GUEST_PACKAGES": " ".join(LXC_GUEST_PACKAGES),
        "DIB_RELEASE": environ.get("DIB_LXC_GUEST_RELEASE") or release,
        "DIB_IMAGE_SIZE": str(settings.lxc_image_size_gb),
        "DIB_JOURNAL_SIZE": str(settings.lxc_journal_mb),
        "DIB_LXC_GUEST_EXTRA_ELEMENTS": " ".join(settings.lxc_extra_elements),
    })
    return env
