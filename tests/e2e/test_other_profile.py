"""The other shipped Debian profile on CI's lighter path: built (warm caches), booted in the
container harness, first boot to its end, and the whole smoke - no restart, LAN, isolation
or VM runs, which the default profile's suite covers with the same code."""

import json

import pytest
from project import PROFILE, ROOT

from appliance.selftest.guest import LOGIN_USER
from pipeline.imagebuild import run_build

from .conftest import booted, in_appliance, smoke
from .disk_images import gpt_qcow2
from .test_image_import import BOOT_AND_LOGIN, DELETE_IMAGE

pytestmark = pytest.mark.e2e

# bookworm-zed (Linux bridge, the reference's design) while trixie-epoxy (OVN) is the default.
OTHER = "trixie-epoxy" if PROFILE == "bookworm-zed" else "bookworm-zed"


def test_other_profile_builds_boots_and_passes_the_smoke():
    # The session's appliance (the default profile's) stays up, idle, for test_restart.
    run_build(OTHER, ROOT / "artifacts" / OTHER, log=print)
    with booted(name="other", logs="pytest-other", profile=OTHER) as state:
        result = smoke(state, profile=OTHER)
        print(result.stdout[-3000:])
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


OTHER_IMAGE = "imported-other-release"
OTHER_SERVER = "imported-other-1"


def test_other_releases_guest_imported_on_the_default_appliance_boots(appliance, tmp_path):
    """The other profile's guest (Debian 12 beside a Debian 13 default) as a cloud image:
    `appliance image import` on the session's appliance, then an instance of it is logged in
    to. Needs the build of the test above (its lxc-rootfs.img)."""
    guest = ROOT / "artifacts" / OTHER / "lxc-rootfs.img"
    assert guest.is_file(), f"{guest}: the other profile's build did not run or failed"
    qcow2 = gpt_qcow2(guest, appliance.merged / "var/tmp" / f"{OTHER_IMAGE}.qcow2", tmp_path)
    try:
        in_appliance(appliance, "appliance", "image", "import", f"/var/tmp/{OTHER_IMAGE}.qcow2", "--name", OTHER_IMAGE)
        booted = in_appliance(appliance, "python3", "-c", BOOT_AND_LOGIN, OTHER_IMAGE, OTHER_SERVER, LOGIN_USER,
                              timeout=900)
        login = json.loads(booted.stdout.strip().splitlines()[-1])["login"]
        assert login == [OTHER_SERVER, "systemd"], f"login as {LOGIN_USER}: {login}"
    finally:
        qcow2.unlink(missing_ok=True)
        in_appliance(appliance, "python3", "-c", DELETE_IMAGE, OTHER_IMAGE, check=False)
