"""The other shipped Debian profile on CI's lighter path: built (warm caches), booted in the
container harness, first boot to its end, and the whole smoke - no restart, LAN, isolation
or VM runs, which the default profile's suite covers with the same code."""

import pytest
from project import PROFILE, ROOT

from pipeline.imagebuild import run_build

from .conftest import booted, smoke

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
