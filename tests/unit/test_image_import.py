"""The pure logic of `appliance image import`: what a file is, which partition is the root,
what an init's ELF header says. The real path (qemu-img, sfdisk, debugfs, Glance) is in
tests/e2e/test_image_import.py."""

import pytest

from appliance.agent import image_import as ii
from appliance.agent.image_import import ImportRefused, Partition

SIZE = 0x10100


def blank(**writes):
    data = bytearray(SIZE)
    for offset, value in writes.values():
        data[offset:offset + len(value)] = value
    return bytes(data)


MBR = blank(sig=(510, b"\x55\xaa"))
EXT = blank(magic=(1080, b"\x53\xef"))
QCOW2 = blank(magic=(0, b"QFI\xfb\x00\x00\x00\x03"))


@pytest.mark.parametrize("head, expected", [
    (QCOW2, "qcow2"),
    (MBR, "raw"),  # MBR, or GPT's protective MBR
    (EXT, "raw"),  # a bare ext filesystem
], ids=["qcow2", "partition-table", "bare-ext"])
def test_container_format_accepts(head, expected):
    assert ii.container_format(head) == expected


@pytest.mark.parametrize("head, message", [
    (blank(), "not a disk image"),
    (b"#!/bin/sh\necho hello\n", "not a disk image"),
    (blank(m=(0, b"KDMV")), "a VMDK disk image"),
    (blank(m=(0, b"vhdxfile")), "a VHDX disk image"),
    (blank(m=(0, b"conectix")), "a VHD disk image"),
], ids=["zeros", "text", "vmdk", "vhdx", "vhd"])
def test_container_format_refuses(head, message):
    with pytest.raises(ImportRefused, match=message):
        ii.container_format(head)


@pytest.mark.parametrize("head, kind", [
    (EXT, "ext"),
    (blank(m=(0, b"XFSB")), "xfs"),
    (blank(m=(0x10040, b"_BHRfS_M")), "btrfs"),
    (blank(m=(0, b"hsqs")), "squashfs"),
    (blank(m=(4086, b"SWAPSPACE2")), "swap"),
    (blank(), "unknown"),
])
def test_filesystem_type(head, kind):
    assert ii.filesystem_type(head) == kind


def elf(machine, order="little", cls=2):
    ident = b"\x7fELF" + bytes([cls, 1 if order == "little" else 2, 1]) + bytes(9)
    return ident + (2).to_bytes(2, order) + machine.to_bytes(2, order) + bytes(44)


@pytest.mark.parametrize("header, arch", [
    (elf(0x3E), "x86_64"),
    (elf(0xB7), "aarch64"),
    (elf(0x03, cls=1), "i386"),
    (elf(0x16, order="big"), "s390x"),
    (elf(0x1234), "unknown (e_machine 0x1234)"),
])
def test_elf_machine(header, arch):
    assert ii.elf_machine(header) == arch


@pytest.mark.parametrize("header", [b"#!/bin/sh\n" + bytes(20), b"\x7fELF", b""], ids=["script", "short", "empty"])
def test_elf_machine_refuses_non_elf(header):
    with pytest.raises(ValueError):
        ii.elf_machine(header)


@pytest.mark.parametrize("machine, arch", [("x86_64", "x86_64"), ("amd64", "x86_64"), ("aarch64", "aarch64"),
                                           ("arm64", "aarch64"), ("mips", "mips")])
def test_host_architecture(machine, arch):
    assert ii.host_architecture(machine) == arch


# Debian 12's genericcloud image as sfdisk --json prints it (root 1, BIOS boot 14, EFI 15).
DEBIAN_GPT = {"partitiontable": {"label": "gpt", "sectorsize": 512, "partitions": [
    {"node": "disk.raw1", "start": 262144, "size": 4030431, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
    {"node": "disk.raw14", "start": 2048, "size": 6144, "type": "21686148-6449-6E6F-744E-656564454649"},
    {"node": "disk.raw15", "start": 8192, "size": 253952, "type": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},
]}}
UBUNTU_GPT = {"partitiontable": {"label": "gpt", "sectorsize": 512, "partitions": [
    {"node": "noble.img1", "start": 2232320, "size": 2000000, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
    {"node": "noble.img13", "start": 34816, "size": 2097152, "type": "BC13C2FF-59E6-4262-A352-B275FD6F7172"},
    {"node": "noble.img14", "start": 2048, "size": 8192, "type": "21686148-6449-6E6F-744E-656564454649"},
    {"node": "noble.img15", "start": 10240, "size": 24576, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
]}}
MBR_TABLE = {"partitiontable": {"label": "dos", "sectorsize": 512, "partitions": [
    {"node": "disk2p1", "start": 2048, "size": 1000, "type": "ef"},
    {"node": "disk2p2", "start": 4096, "size": 2000, "type": "82"},
    {"node": "disk2p3", "start": 8192, "size": 9000, "type": "83"},
    {"node": "disk2p4", "start": 20000, "size": 500, "type": "5"},
]}}
ONLY_EFI = {"partitiontable": {"label": "gpt", "sectorsize": 512, "partitions": [
    {"node": "d1", "start": 2048, "size": 1000, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"}]}}


@pytest.mark.parametrize("table, label, numbers", [
    (DEBIAN_GPT, "gpt", [1]),
    (UBUNTU_GPT, "gpt", [1]),  # /boot (type extended boot) is not a root
    (MBR_TABLE, "dos", [3]),
    (ONLY_EFI, "gpt", []),
], ids=["debian-gpt", "ubuntu-gpt-with-boot", "mbr", "efi-only"])
def test_root_candidates(table, label, numbers):
    got_label, parts = ii.partitions_from_sfdisk(table)
    assert got_label == label
    assert [p.number for p in ii.root_candidates(got_label, parts)] == numbers


def test_partition_offsets_are_bytes():
    _, parts = ii.partitions_from_sfdisk(DEBIAN_GPT)
    assert parts[0] == Partition(1, 262144 * 512, 4030431 * 512, "0FC63DAF-8483-4772-8E79-3D69D8477DE4")
    # GPT type GUIDs compare upper-case whatever sfdisk printed.
    assert parts[2].type == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def test_candidates_largest_first():
    parts = [Partition(1, 0, 10, "83"), Partition(2, 10, 30, "83"), Partition(3, 40, 20, "83")]
    assert [p.number for p in ii.root_candidates("dos", parts)] == [2, 3, 1]


STAT_LINK = """Inode: 828   Type: symlink    Mode:  0777   Flags: 0x0
Links: 1   Blockcount: 0
Fast link dest: "/lib/systemd/systemd"
"""
STAT_FILE = """Inode: 9495   Type: regular    Mode:  0755   Flags: 0x80000
Links: 1   Blockcount: 200
"""
STAT_DIR = "Inode: 2   Type: directory    Mode:  0755   Flags: 0x80000\n"
STAT_SLOW_LINK = "Inode: 12   Type: symlink    Mode:  0777   Flags: 0x80000\nEXTENTS:\n(0):1234\n"


@pytest.mark.parametrize("text, parsed", [
    (STAT_LINK, ("symlink", "/lib/systemd/systemd", 0o777)),
    (STAT_FILE, ("regular", None, 0o755)),
    (STAT_DIR, ("directory", None, 0o755)),
    (STAT_SLOW_LINK, ("symlink", None, 0o777)),
    ("/sbin/init: File not found by ext2_lookup \n", ("missing", None, 0)),
    ("", ("missing", None, 0)),
])
def test_parse_debugfs_stat(text, parsed):
    assert ii.parse_debugfs_stat(text) == parsed


class FakeExt(ii.Ext):
    """A filesystem given as {path: (type, link target, mode)}; debugfs follows the links
    of directories itself, so paths here are as it would resolve them."""

    def __init__(self, tree):
        self.tree = tree

    def stat(self, path):
        return self.tree.get(path, ("missing", None, 0))


@pytest.mark.parametrize("tree, result", [
    ({"/sbin/init": ("symlink", "/lib/systemd/systemd", 0o777), "/lib/systemd/systemd": ("regular", None, 0o755)},
     ("/lib/systemd/systemd", 0o755)),
    ({"/sbin/init": ("symlink", "../bin/busybox", 0o777), "/bin/busybox": ("regular", None, 0o755)},
     ("/bin/busybox", 0o755)),
    ({"/sbin/init": ("regular", None, 0o644)}, ("/sbin/init", 0o644)),
], ids=["absolute-link", "relative-link", "plain-file"])
def test_resolve(tree, result):
    assert FakeExt(tree).resolve("/sbin/init") == result


@pytest.mark.parametrize("tree, error", [
    ({}, FileNotFoundError),
    ({"/sbin/init": ("symlink", "/nowhere", 0o777)}, FileNotFoundError),
    ({"/sbin/init": ("directory", None, 0o755)}, ValueError),
    ({"/sbin/init": ("symlink", "/sbin/init", 0o777)}, ValueError),  # a loop
], ids=["missing", "dangling", "directory", "loop"])
def test_resolve_refuses(tree, error):
    with pytest.raises(error):
        FakeExt(tree).resolve("/sbin/init")


@pytest.mark.parametrize("file, name", [("debian-12-genericcloud-amd64.qcow2", "debian-12-genericcloud-amd64"),
                                        ("noble.img", "noble"), ("root.raw", "root"), ("disk", "disk")])
def test_default_name(file, name):
    from pathlib import Path

    assert ii.default_name(Path(file)) == name


def test_glance_properties():
    prepared = ii.Prepared(rootfs=None, architecture="x86_64", source="")
    assert ii.glance_properties(prepared) == {"hypervisor_type": "lxc", "os_command_line": "/sbin/init",
                                              "architecture": "x86_64"}
