"""Profile data -> elements and DIB environment, and the elements themselves."""

import re
import subprocess
from pathlib import Path

import pytest

from pipeline.imagebuild import settings as s
from pipeline.profiles import load_profile

DIB_ELEMENTS = Path(__import__("diskimage_builder").__file__).parent / "elements"
PHASES = ("root.d", "extra-data.d", "pre-install.d", "install.d", "post-install.d", "post-root.d",
          "block-device.d", "pre-finalise.d", "finalise.d", "cleanup.d")


@pytest.fixture(scope="module")
def zed():
    return load_profile("bookworm-zed")


def appliance_env(profile, environ=None, tmp=Path("/tmp")):
    return s.appliance_env(profile, s.BuildSettings(), profile_file=tmp / "p.yaml", lxc_image=tmp / "l.zst",
                           lxc_image_size=1, report_dir=tmp, environ=environ or {})


def test_env_var_name():
    assert s.env_var_name("PACKAGES", "nova") == "APPLIANCE_PACKAGES_NOVA"
    assert s.env_var_name("UNITS", "openstack-client") == "APPLIANCE_UNITS_OPENSTACK_CLIENT"


def test_elements_follow_the_profile(zed):
    elements = s.appliance_elements(zed, s.BuildSettings(extra_elements=()))
    assert elements[:3] == ["vm", "block-device-mbr", "debian-minimal"]
    services = [svc.name for svc in zed.services if svc.packages]
    assert [e for e in elements if e in s.SERVICE_ELEMENTS.values()] == [s.SERVICE_ELEMENTS[n] for n in services]
    assert elements[-5:] == ["appliance-firstboot", "appliance-overlays", "appliance-migrate", "appliance-lxc-image",
                             "appliance-manifest"]


def test_every_element_exists_and_is_documented(zed):
    for name in s.appliance_elements(zed, s.BuildSettings(extra_elements=())) + list(s.LXC_GUEST_ELEMENTS):
        ours = s.ELEMENTS_DIR / name
        assert ours.is_dir() or (DIB_ELEMENTS / name).is_dir(), name
    for element in s.ELEMENTS_DIR.iterdir():
        assert (element / "README.rst").is_file() or (element / "README.md").is_file(), element.name
        # element-deps only where there are dependencies (an empty one fails dib-lint), each a
        # known element.
        deps = element / "element-deps"
        for dep in (deps.read_text().split() if deps.is_file() else []):
            assert (s.ELEMENTS_DIR / dep).is_dir() or (DIB_ELEMENTS / dep).is_dir(), f"{element.name}: {dep}"


def test_package_and_unit_lists_come_from_the_profile(zed):
    env = appliance_env(zed)
    nova = zed.service("nova")
    assert env["APPLIANCE_PACKAGES_NOVA"].split() == list(nova.packages)
    assert env["APPLIANCE_UNITS_NOVA"].split() == list(nova.units)
    for svc in zed.services:
        if svc.packages:
            assert env[s.env_var_name("PACKAGES", svc.name)].split() == list(svc.packages)
    assert env["DIB_RELEASE"] == "bookworm"
    assert env["DIB_DISTRIBUTION_MIRROR"] == zed.distro.mirror
    assert env["DIB_DEBIAN_SECURITY_MIRROR"] == zed.distro.security_mirror
    assert env["DIB_DEBIAN_COMPONENTS"] == "main"


def test_operator_mirror_wins(zed):
    env = appliance_env(zed, {"DIB_DISTRIBUTION_MIRROR": "http://127.0.0.1:9/debian"})
    assert env["DIB_DISTRIBUTION_MIRROR"] == "http://127.0.0.1:9/debian"


def test_ubuntu_profile_uses_its_element_and_cloud_archive():
    newton = load_profile("xenial-newton")
    assert "ubuntu-minimal" in s.appliance_elements(newton, s.BuildSettings(extra_elements=()))
    env = appliance_env(newton, {"APPLIANCE_CLOUD_ARCHIVE_MIRROR": "http://127.0.0.1:9/uca"})
    assert env["APPLIANCE_APT_EXTRA_REPOSITORIES"] == "deb http://127.0.0.1:9/uca xenial-updates/newton main"
    assert "ubuntu-cloud-keyring" in env["APPLIANCE_PACKAGES_BASE"]
    assert "DIB_DEBIAN_SECURITY_MIRROR" not in env


def test_guest_env_is_debian_and_sized():
    env = s.lxc_guest_env(load_profile("bookworm-zed"), s.BuildSettings(), {})
    assert env["DIB_LXC_GUEST_RELEASE"] == "bookworm"
    assert set(env["DIB_LXC_GUEST_PACKAGES"].split()) >= {"systemd-sysv", "openssh-server", "cloud-init", "sudo"}
    assert float(env["DIB_IMAGE_SIZE"]) > 0


def test_build_dirs_stay_out_of_the_repository():
    settings = s.BuildSettings()
    for path in (settings.work_dir, settings.dib_tmp_dir, settings.cache_dir):
        assert s.REPO_ROOT not in path.resolve().parents


def phase_scripts():
    for root in (s.ELEMENTS_DIR, Path(__file__).parent / "elements"):
        for phase in PHASES:
            yield from sorted(root.glob(f"*/{phase}/*"))


@pytest.mark.parametrize("script", list(phase_scripts()), ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_phase_scripts_are_strict_numbered_executable_bash(script):
    assert re.match(r"^\d\d-[a-z0-9-]+$", script.name), "numbered, DIB-runnable name"
    assert script.stat().st_mode & 0o111, "executable"
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    # diskimage-builder's own preamble (dib-lint): strict always, traced with DIB_DEBUG_TRACE.
    assert re.search(r'^if \[ "\$\{DIB_DEBUG_TRACE:-0\}" -gt 0 \]; then\n    set -x\nfi\nset -eu\nset -o pipefail$', text, re.M)
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_disk_layout_boots_bios_and_uefi(zed):
    """The block-device config the build passes: an EFI system partition (MBR type EF) first,
    the root filesystem last (growroot grows the last partition), nothing mounted but /."""
    import yaml

    env = appliance_env(zed)
    path = Path(env["DIB_BLOCK_DEVICE_CONFIG"].removeprefix("file://"))
    layout = yaml.safe_load(path.read_text())
    partitions = next(node["partitioning"] for node in layout if "partitioning" in node)["partitions"]
    assert [p["name"] for p in partitions] == ["ESP", "root"]
    assert partitions[0]["type"] == "ef" and "mkfs" not in partitions[0]
    assert partitions[-1]["size"] == "100%" and partitions[-1]["mkfs"]["mount"]["mount_point"] == "/"
    assert "appliance-efi" in s.appliance_elements(zed, s.BuildSettings(extra_elements=()))


THP_ENV = Path(s.ELEMENTS_DIR) / "appliance-thp" / "environment.d" / "20-appliance-thp.bash"
BOOTLOADER_ENV = DIB_ELEMENTS / "bootloader" / "environment.d" / "10-bootloader-default-cmdline"


@pytest.mark.parametrize("preset, sources, cmdline, error", [
    ({}, [THP_ENV], "nofb nomodeset gfxpayload=text transparent_hugepage=madvise", None),
    ({}, [BOOTLOADER_ENV, THP_ENV], "nofb nomodeset gfxpayload=text transparent_hugepage=madvise", None),
    ({}, [THP_ENV, BOOTLOADER_ENV], "nofb nomodeset gfxpayload=text transparent_hugepage=madvise", None),
    ({}, [THP_ENV, THP_ENV], "nofb nomodeset gfxpayload=text transparent_hugepage=madvise", None),  # phases re-read it
    ({"DIB_BOOTLOADER_DEFAULT_CMDLINE": "quiet", "DIB_APPLIANCE_THP": "never"}, [THP_ENV],
     "quiet transparent_hugepage=never", None),
    ({"DIB_BOOTLOADER_DEFAULT_CMDLINE": "transparent_hugepage=always"}, [THP_ENV], "transparent_hugepage=always", None),
    ({"DIB_APPLIANCE_THP": "sometimes"}, [THP_ENV], None,
     "DIB_APPLIANCE_THP: expected always, madvise or never, got 'sometimes'"),
])
def test_kernel_command_line_asks_huge_pages_on_request_only(preset, sources, cmdline, error):
    script = "set -eu; " + "; ".join(f"source {p}" for p in sources) + '; printf %s "$DIB_BOOTLOADER_DEFAULT_CMDLINE"'
    result = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", **preset}, capture_output=True,
                            text=True)
    if error:
        assert result.returncode != 0 and result.stderr.strip() == error and not result.stdout
    else:
        assert result.returncode == 0 and result.stdout == cmdline, result.stderr


def test_thp_element_is_in_every_appliance(zed):
    assert "appliance-thp" in s.appliance_elements(zed, s.BuildSettings(extra_elements=()))
