"""Which mounts the harness's stop releases under an appliance's state directory."""

from pathlib import Path

import pytest

from pipeline.imagebuild.cleanup import mount_sources_under

STATE = Path("/var/tmp/appliance-boot/trixie-epoxy")

# /proc/self/mountinfo lines: id, parent, major:minor, root, mount point, options, " - ",
# type, source, super options (proc(5)).
MOUNTINFO = """\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
101 22 7:1 / /var/tmp/appliance-boot/trixie-epoxy/lower ro - ext4 /dev/loop1 ro
102 22 0:50 / /var/tmp/appliance-boot/trixie-epoxy/merged rw - overlay overlay rw
103 102 0:51 / /var/tmp/appliance-boot/trixie-epoxy/merged/run rw shared:5 - tmpfs tmpfs rw
104 22 7:2 / /var/tmp/appliance-boot/trixie-epoxy-2/lower ro - ext4 /dev/loop2 ro
105 22 7:3 / /var/tmp/appliance-boot/trixie-epoxy/with\\040space ro - ext4 /dev/loop3 ro
106 22 7:4 / /var/tmp/appliance-boot/trixie-epoxy ro - ext4 /dev/loop4 ro
"""


@pytest.mark.parametrize(
    ("mountpoint", "released"),
    [
        ("/var/tmp/appliance-boot/trixie-epoxy/lower", True),  # the image's root partition
        ("/var/tmp/appliance-boot/trixie-epoxy/merged/run", True),  # nested below the overlay
        ("/var/tmp/appliance-boot/trixie-epoxy/with space", True),  # octal escape undone
        ("/var/tmp/appliance-boot/trixie-epoxy", True),  # the directory itself
        ("/var/tmp/appliance-boot/trixie-epoxy-2/lower", False),  # another appliance, same prefix
        ("/", False),
    ],
)
def test_a_mount_is_released_only_when_it_is_under_the_state_directory(mountpoint, released):
    assert (mountpoint in [m for _, m in mount_sources_under(STATE, MOUNTINFO)]) is released


def test_nested_mounts_come_before_the_mounts_they_are_on():
    order = [m for _, m in mount_sources_under(STATE, MOUNTINFO)]
    assert order.index(f"{STATE}/merged/run") < order.index(f"{STATE}/merged") < order.index(str(STATE))


def test_the_source_is_kept_so_its_loop_device_can_be_detached():
    assert ("/dev/loop1", f"{STATE}/lower") in mount_sources_under(STATE, MOUNTINFO)

