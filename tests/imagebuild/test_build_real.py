"""Real builds (slow: `pytest -m build`). They reuse the shared DIB caches, so after one
cold build they take minutes, not tens of minutes. Never run two at once: one work dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from build_test_support import needs_loop
from project import PROFILE

from pipeline.imagebuild import run_build
from pipeline.imagebuild.cleanup import loop_devices, loops_backed_under, mounts_under
from pipeline.imagebuild.configcheck import image_root_overlay
from pipeline.imagebuild.driver import StageFailed
from pipeline.imagebuild.settings import BuildSettings
from pipeline.profiles import load_profile

pytestmark = [pytest.mark.build, needs_loop]
TEST_ELEMENTS = Path(__file__).parent / "elements"


def assert_nothing_left(*roots: Path) -> None:
    for root in roots:
        assert mounts_under(root) == [], f"mounts left under {root}"
        assert loops_backed_under(root, loop_devices()) == [], f"loop devices left for {root}"
    assert not list(Path("/dev/mapper").glob("loop*")) if Path("/dev/mapper").is_dir() else True


def test_default_build_produces_bootable_artifacts(appliance_image, tmp_path):
    out, manifest, lines = appliance_image
    settings = BuildSettings()

    for name in ("appliance.qcow2", "appliance.raw", "lxc-rootfs.img", "build.log", "manifest.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert {"appliance.qcow2", "appliance.raw", "lxc-rootfs.img"} <= set(manifest["artifacts"])
    names = {p["name"] for p in manifest["packages"]}
    assert {"keystone", "nova-compute-lxc", "python3-openstacksdk"} <= names
    assert set(load_profile(PROFILE).service("neutron").packages) <= names
    assert {"lxc-rootfs", "appliance-image", "manifest"} <= set(manifest["stages"])
    assert any(line.startswith("[build] appliance-image done in") for line in lines)

    with image_root_overlay(out / "appliance.raw", tmp_path / "inspect") as root:
        unit = root / "etc/systemd/system/appliance-firstboot.service"
        assert "python3 -m appliance run" in unit.read_text()
        assert (root / "etc/systemd/system/multi-user.target.wants/appliance-firstboot.service").is_symlink()
        held = (root / "usr/share/appliance/held-units").read_text().split()
        assert "nova-compute.service" in held and "mariadb.service" in held
        assert all(os.readlink(root / "etc/systemd/system" / unit) == "/dev/null" for unit in held)
        # Enabled under the mask: first boot only unmasks (no enable, no update-rc.d).
        wants = root / "etc/systemd/system/multi-user.target.wants"
        neutron_agent = f"{load_profile(PROFILE).service('neutron').units[-1]}.service"
        assert all((wants / unit).is_symlink() for unit in ("nova-compute.service", "mariadb.service", neutron_agent))
        assert (root / "usr/share/appliance/profile.yaml").is_file()
        assert (root / "usr/share/appliance/overlays/etc/nova").is_dir()
        assert (root / "var/lib/appliance/images/lxc-rootfs.img.zst").stat().st_size > 10 << 20
        # The appliance package, versioned, and nothing of the build host's pipeline package.
        site_packages = root / "usr/lib/python3/dist-packages"
        assert (site_packages / "appliance/cli.py").is_file()
        assert (site_packages / "appliance/selftest/api_workflow.py").is_file()
        assert list(site_packages.glob("appliance-*.dist-info/METADATA"))
        assert not (site_packages / "pipeline").exists()
        # Shipped migrated: the stamp first boot trusts, the schemas, and no build-time user.
        stamp = json.loads((root / "var/lib/appliance/migrated.json").read_text())
        assert "nova-api" in stamp["packages"] and "nova_cell0" in stamp["databases"]
        for database in ("keystone", "nova_api", "nova_cell0", "neutron", "placement"):
            assert (root / "var/lib/mysql" / database).is_dir(), database
        assert not (root / "var/log/appliance/firstboot.log").exists()
        assert not (root / "run/appliance-migrate").exists()
    assert_nothing_left(settings.work_dir, out, tmp_path)


@pytest.mark.parametrize("mode", ["exit", "kill"])
def test_failed_guest_build_leaves_no_loop_or_mount(tmp_path, monkeypatch, mode):
    """The guest build is the quick one; the failing element attaches at finalise.d, when
    the loop device is attached and the image mounted. `kill` SIGKILLs disk-image-create
    so that only the driver's cleanup can release them."""
    monkeypatch.setenv("APPLIANCE_TEST_FAIL_MODE", mode)
    settings = BuildSettings(extra_elements=(), extra_elements_path=(str(TEST_ELEMENTS),),
                             lxc_extra_elements=("appliance-test-fail",))
    out = tmp_path / "out"
    lines: list[str] = []
    with pytest.raises(StageFailed) as caught:
        run_build("bookworm-zed", out, log=lines.append, settings=settings)
    assert caught.value.stage == "lxc-rootfs"
    assert str(out / "build.log") in str(caught.value)
    assert "appliance-test-fail: " in (out / "build.log").read_text()
    if mode == "kill":  # DIB's own trap never ran: the driver must have released them
        assert any(line.startswith("[cleanup] losetup -d") for line in lines)
    assert_nothing_left(settings.work_dir, settings.cache_dir, out)
