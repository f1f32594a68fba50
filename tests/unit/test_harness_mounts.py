"""Which mounts the harness's stop releases under an appliance's state directory."""

from pathlib import Path

import pytest

from pipeline.harness.nspawn import mounts_under

STATE = Path("/var/tmp/appliance-boot/trixie-epoxy")

PROC_MOUNTS = """\
/dev/sda1 / ext4 rw 0 0
/dev/loop1 /var/tmp/appliance-boot/trixie-epoxy/lower ext4 ro 0 0
overlay /var/tmp/appliance-boot/trixie-epoxy/merged overlay rw 0 0
tmpfs /var/tmp/appliance-boot/trixie-epoxy/merged/run tmpfs rw 0 0
/dev/loop2 /var/tmp/appliance-boot/trixie-epoxy-2/lower ext4 ro 0 0
/dev/loop3 /var/tmp/appliance-boot/trixie-epoxy/with\\040space ext4 ro 0 0
/dev/loop4 /var/tmp/appliance-boot/trixie-epoxy ext4 ro 0 0
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
    assert (mountpoint in [m for _, m in mounts_under(STATE, PROC_MOUNTS)]) is released


def test_nested_mounts_come_before_the_mounts_they_are_on():
    order = [m for _, m in mounts_under(STATE, PROC_MOUNTS)]
    assert order.index(f"{STATE}/merged/run") < order.index(f"{STATE}/merged") < order.index(str(STATE))


def test_the_source_is_kept_so_its_loop_device_can_be_detached():
    assert ("/dev/loop1", f"{STATE}/lower") in mounts_under(STATE, PROC_MOUNTS)
