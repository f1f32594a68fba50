"""Turn a standard cloud disk image into what Nova's libvirt LXC driver boots.

The driver attaches a raw image through a loop device and mounts it whole as the
container's root, then runs ``os_command_line`` in it: so the result must be one bare
filesystem, holding an init that this host's CPU runs. A cloud image is usually a qcow2 (or
raw) disk with a partition table (MBR or GPT) whose root filesystem sits beside an EFI, BIOS
boot or /boot partition. ``prepare`` finds that root partition and copies it out; nothing is
mounted and no loop device is used (the filesystem is read with ``debugfs``), so an
interrupted import leaves only files in its work directory, which is removed.

Shapes: offsets and sizes in bytes; ``sfdisk --json`` gives sectors (``sectorsize``).
Errors: ``ImportRefused`` (an ``ApplianceError``) with one line naming the file and why.
Pure helpers (``container_format``, ``filesystem_type``, ``elf_machine``,
``root_candidates``, ``parse_debugfs_stat``) are unit-tested without any image.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ApplianceError

INIT = "/sbin/init"
# Glance properties the libvirt LXC driver needs (nova.virt.libvirt: hypervisor_type picks
# the driver's image filter; os_command_line is the container's init).
LXC_PROPERTIES = {"hypervisor_type": "lxc", "os_command_line": INIT}

QCOW2_MAGIC = b"QFI\xfb"
# Formats qemu-img would read but this import does not take: named, so the refusal says
# what the file is.
OTHER_DISK_MAGICS = {b"KDMV": "VMDK", b"vhdxfile": "VHDX", b"conectix": "VHD"}
EXT_MAGIC_OFFSET = 1024 + 56  # superblock at 1024, s_magic at 56 (0xEF53, little-endian)

# GPT partition type GUIDs (UEFI spec; the Discoverable Partitions Specification for roots).
GPT_NOT_ROOT = {
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI system",
    "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "BC13C2FF-59E6-4262-A352-B275FD6F7172": "extended boot (/boot)",
}
# MBR type bytes: EFI, swap, extended partitions.
MBR_NOT_ROOT = {"ef": "EFI system", "82": "Linux swap", "5": "extended", "f": "extended", "85": "extended"}

# ELF e_machine values (System V ABI) and the uname -m of a host that runs them natively.
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x03: "i386", 0x28: "arm", 0xF3: "riscv64",
                0x15: "ppc64", 0x16: "s390x"}
UNAME_TO_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
                 "riscv64": "riscv64", "ppc64le": "ppc64", "s390x": "s390x"}


class ImportRefused(ApplianceError):
    """The file cannot become an LXC image; the message is one line naming file and reason."""


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes
    type: str  # GPT type GUID (upper case) or MBR type byte in hex ("83")


@dataclass(frozen=True)
class Prepared:
    rootfs: Path  # raw ext2/3/4 filesystem image, ready to upload
    architecture: str  # Glance's architecture property, e.g. "x86_64"
    source: str  # how it was found, for the operator: "partition 1 of a GPT qcow2"


# --- pure logic -----------------------------------------------------------------------------

def container_format(head: bytes) -> str:
    """"qcow2" or "raw" from the first bytes of a file (at least 64 KiB of it for raw);
    a raw file must start with a partition table or an ext2/3/4 filesystem."""
    if head.startswith(QCOW2_MAGIC):
        return "qcow2"
    for magic, name in OTHER_DISK_MAGICS.items():
        if head.startswith(magic):
            raise ImportRefused(f"a {name} disk image: convert it to qcow2 or raw first (qemu-img convert)")
    if head[510:512] == b"\x55\xaa" or filesystem_type(head) != "unknown":
        return "raw"
    raise ImportRefused("not a disk image: expected qcow2, or raw with an MBR/GPT partition table or an ext2/3/4 filesystem")


def filesystem_type(head: bytes) -> str:
    """"ext" (2/3/4), "xfs", "btrfs", "swap", "squashfs" or "unknown" from a filesystem's first 64 KiB+."""
    if head[EXT_MAGIC_OFFSET:EXT_MAGIC_OFFSET + 2] == b"\x53\xef":
        return "ext"
    if head.startswith(b"XFSB"):
        return "xfs"
    if head[0x10040:0x10048] == b"_BHRfS_M":
        return "btrfs"
    if head.startswith(b"hsqs"):
        return "squashfs"
    if head[4086:4096] == b"SWAPSPACE2":
        return "swap"
    return "unknown"


def elf_machine(header: bytes) -> str:
    """The architecture of an ELF executable's header (its first 20 bytes), e.g. "x86_64"."""
    if len(header) < 20 or not header.startswith(b"\x7fELF"):
        raise ValueError("not an ELF executable")
    order = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], order)
    return ELF_MACHINES.get(machine, f"unknown (e_machine {machine:#x})")


def host_architecture(machine: str | None = None) -> str:
    machine = machine or os.uname().machine
    return UNAME_TO_ARCH.get(machine, machine)


def partitions_from_sfdisk(table: dict) -> tuple[str, list[Partition]]:
    """("gpt" | "dos", partitions) from the JSON ``sfdisk --json`` prints."""
    table = table["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    found = []
    for index, entry in enumerate(table.get("partitions", []), start=1):
        node = entry.get("node", "")
        digits = node[len(node.rstrip("0123456789")):] or str(index)  # "disk.raw1", "disk2p1"
        kind = str(entry.get("type", ""))
        found.append(Partition(int(digits), int(entry["start"]) * sector, int(entry["size"]) * sector,
                               kind.upper() if table["label"] == "gpt" else kind.lower()))
    return table["label"], found


def root_candidates(label: str, partitions: list[Partition]) -> list[Partition]:
    """Partitions that may hold a root filesystem (not EFI, BIOS boot, swap, /boot, extended),
    largest first."""
    excluded = GPT_NOT_ROOT if label == "gpt" else MBR_NOT_ROOT
    keep = [p for p in partitions if p.type not in excluded and p.size > 0]
    return sorted(keep, key=lambda p: p.size, reverse=True)


def parse_debugfs_stat(text: str) -> tuple[str, str | None, int]:
    """(type, fast link target or None, mode) from ``debugfs -R "stat PATH"``; type is
    "missing" when debugfs found no such file."""
    if "File not found" in text or "Inode:" not in text:
        return "missing", None, 0
    kind = text.split("Type:", 1)[1].split()[0]
    mode = int(text.split("Mode:", 1)[1].split()[0], 8)
    target = None
    if 'Fast link dest: "' in text:
        target = text.split('Fast link dest: "', 1)[1].rsplit('"', 1)[0]
    return kind, target, mode


# --- what touches files ---------------------------------------------------------------------

def _run(cmd: list[str], *, binary: bool = False, timeout: float = 1800) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=not binary, timeout=timeout)
    except FileNotFoundError:
        raise ApplianceError(f"{cmd[0]} is not installed") from None


def read_head(path: Path, size: int = 0x10100, offset: int = 0) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


class Ext:
    """Read an ext2/3/4 filesystem image with debugfs (no mount, no loop device)."""

    def __init__(self, image: Path):
        self.image = image

    def stat(self, path: str) -> tuple[str, str | None, int]:
        done = _run(["debugfs", "-R", f"stat {path}", str(self.image)])
        kind, target, mode = parse_debugfs_stat(done.stdout + done.stderr)
        if kind == "symlink" and target is None:  # a slow link: its target is its content
            target = _run(["debugfs", "-R", f"cat {path}", str(self.image)], binary=True).stdout.decode(errors="replace")
        return kind, target, mode

    def resolve(self, path: str, hops: int = 16) -> tuple[str, int]:
        """Follow symlinks (debugfs follows those of the directories) to (path, mode) of a
        regular file; ImportRefused-free: raises FileNotFoundError / ValueError."""
        for _ in range(hops):
            kind, target, mode = self.stat(path)
            if kind == "missing":
                raise FileNotFoundError(path)
            if kind != "symlink":
                if kind != "regular":
                    raise ValueError(f"{path} is a {kind}, not a file")
                return path, mode
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        raise ValueError(f"{path}: too many symbolic links")

    def head(self, path: str, size: int = 64) -> bytes:
        return _run(["debugfs", "-R", f"cat {path}", str(self.image)], binary=True).stdout[:size]


def init_architecture(image: Path) -> str:
    """The architecture of INIT in an ext filesystem image; ValueError/FileNotFoundError when
    it has none that could run."""
    ext = Ext(image)
    path, mode = ext.resolve(INIT)
    if not mode & 0o111:
        raise ValueError(f"{INIT} ({path}) is not executable")
    try:
        return elf_machine(ext.head(path))
    except ValueError:
        raise ValueError(f"{INIT} ({path}) is not an ELF executable") from None


def copy_range(source: Path, target: Path, offset: int, size: int) -> None:
    """Copy size bytes at offset into a new sparse file (zero blocks become holes)."""
    done = _run(["dd", f"if={source}", f"of={target}", "bs=1M", "iflag=skip_bytes,count_bytes",
                 f"skip={offset}", f"count={size}", "conv=sparse", "status=none"])
    if done.returncode != 0:
        raise ApplianceError(f"copying the partition failed: {done.stderr.strip()[:200]}")


def qcow2_to_raw(source: Path, target: Path) -> None:
    info = _run(["qemu-img", "info", "--output=json", "-f", "qcow2", str(source)])
    if info.returncode != 0:
        raise ImportRefused(f"qemu-img cannot read it: {(info.stderr.strip().splitlines() or ['?'])[-1][:200]}")
    meta = json.loads(info.stdout)
    # A backing or external data file would make qemu-img read a file the uploader named.
    if meta.get("backing-filename") or meta.get("format-specific", {}).get("data", {}).get("data-file"):
        raise ImportRefused("a qcow2 with a backing or data file: flatten it first (qemu-img convert)")
    done = _run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(source), str(target)])
    if done.returncode != 0:
        raise ImportRefused(f"qemu-img convert failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}")


def _check_filesystem(image: Path, where: str, host_arch: str) -> str:
    kind = filesystem_type(read_head(image))
    if kind != "ext":
        raise ImportRefused(f"{where} holds {'no known' if kind == 'unknown' else 'a ' + kind} filesystem: "
                            f"the LXC image must be ext2/3/4")
    try:
        arch = init_architecture(image)
    except (FileNotFoundError, ValueError) as exc:
        raise ImportRefused(f"{where}: no usable init: {exc}") from None
    if arch != host_arch:
        raise ImportRefused(f"{where}: {INIT} is for {arch}, this host runs {host_arch}")
    return arch


def prepare(source: Path, work: Path, *, host_arch: str | None = None,
            say: Callable[[str], None] = lambda line: None) -> Prepared:
    """Make work/rootfs.img from source (qcow2 or raw; partitioned or a bare filesystem)."""
    host_arch = host_arch or host_architecture()
    if not source.is_file():
        raise ImportRefused("no such file")
    fmt = container_format(read_head(source))
    disk = source
    if fmt == "qcow2":
        say("converting qcow2 to raw")
        disk = work / "disk.raw"
        qcow2_to_raw(source, disk)
    if filesystem_type(read_head(disk)) == "ext":  # a bare filesystem: nothing to extract
        rootfs = work / "rootfs.img"
        if disk == source:
            subprocess.run(["cp", "--sparse=always", str(source), str(rootfs)], check=True)
        else:
            disk.rename(rootfs)
        return Prepared(rootfs, _check_filesystem(rootfs, "the filesystem", host_arch), f"a bare filesystem ({fmt})")
    table = _run(["sfdisk", "--json", str(disk)])
    if table.returncode != 0 or not table.stdout.strip():
        raise ImportRefused("no partition table and no filesystem found (sfdisk found none)")
    label, parts = partitions_from_sfdisk(json.loads(table.stdout))
    candidates = root_candidates(label, parts)
    if not candidates:
        raise ImportRefused(f"its {label.upper()} table has no partition that could be a root filesystem")
    roots: list[tuple[Partition, Path, str]] = []
    refusals: list[str] = []
    for part in candidates:
        extracted = work / f"part{part.number}.img"
        copy_range(disk, extracted, part.start, part.size)
        try:
            arch = _check_filesystem(extracted, f"partition {part.number}", host_arch)
            roots.append((part, extracted, arch))
        except ImportRefused as exc:
            refusals.append(str(exc))
            extracted.unlink()
    if disk != source:
        disk.unlink()
    if not roots:
        raise ImportRefused("no root filesystem: " + "; ".join(refusals))
    if len(roots) > 1:
        numbers = ", ".join(str(part.number) for part, _, _ in roots)
        raise ImportRefused(f"several partitions hold a root filesystem ({numbers}): import the one you mean as raw")
    part, extracted, arch = roots[0]
    rootfs = work / "rootfs.img"
    extracted.rename(rootfs)
    return Prepared(rootfs, arch, f"partition {part.number} of a {'GPT' if label == 'gpt' else 'MBR'} {fmt}")


def default_name(source: Path) -> str:
    name = source.name
    for suffix in (".qcow2", ".img", ".raw"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def work_dir(base: str | None = None):
    """A private work directory under /var/tmp (the images are large), removed on exit."""
    return tempfile.TemporaryDirectory(prefix="appliance-image-import-", dir=base or "/var/tmp")


def glance_properties(prepared: Prepared) -> dict:
    return {**LXC_PROPERTIES, "architecture": prepared.architecture}


def upload(conn, prepared: Prepared, name: str):
    """Upload as a public raw image with the LXC properties; returns the Glance image. A
    failed upload leaves no image behind."""
    try:
        return conn.image.create_image(name=name, filename=str(prepared.rootfs), disk_format="raw",
                                       container_format="bare", visibility="public", wait=True, timeout=1800,
                                       **glance_properties(prepared))
    except BaseException:
        for image in conn.image.images(name=name):
            if image.status != "active":
                conn.image.delete_image(image, ignore_missing=True)
        raise


def import_image(source: Path, name: str | None, connect, say: Callable[[str], None] = print):
    """`appliance image import`: prepare, then upload with connect() (an openstacksdk
    Connection factory); returns the Glance image. ImportRefused names the file."""
    name = name or default_name(source)
    conn = connect()
    with work_dir() as tmp:
        try:
            # Before the slow part: the name decides nothing else.
            if any(True for _ in conn.image.images(name=name)):
                raise ImportRefused(f"an image named {name!r} exists already: choose another with --name")
            prepared = prepare(source, Path(tmp), say=say)
        except ImportRefused as exc:
            raise ImportRefused(f"{source}: {exc}") from None
        say(f"{source}: {prepared.source}, {prepared.architecture}, init {INIT}; uploading as {name!r}")
        image = upload(conn, prepared, name)
    say(f"imported {name} ({image.id}): openstack server create --image {name} --flavor ... --network ...")
    return image
