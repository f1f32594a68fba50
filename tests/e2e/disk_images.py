"""Disk images a cloud would be given, built here from a root filesystem image (no download,
no loop device): a GPT disk with an EFI system partition before the root, as Debian's and
Ubuntu's cloud images are laid out, converted to qcow2."""

from __future__ import annotations

import subprocess
from pathlib import Path

MIB = 1 << 20
EFI_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def run(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True)


def gpt_qcow2(rootfs: Path, out: Path, work: Path, *, efi_mib: int = 32) -> Path:
    """out = qcow2 of a GPT disk: partition 1 EFI (vfat, efi_mib), partition 2 the rootfs."""
    root_mib = -(-rootfs.stat().st_size // MIB)
    disk = work / "gpt-disk.raw"
    # 1 MiB before the first partition and 1 MiB after the last for the GPT and its backup.
    disk.unlink(missing_ok=True)
    run("truncate", "-s", f"{1 + efi_mib + root_mib + 1}M", str(disk))
    layout = (f"label: gpt\n"
              f"start=1MiB, size={efi_mib}MiB, type={EFI_TYPE}, name=EFI\n"
              f"start={1 + efi_mib}MiB, size={root_mib}MiB, type={LINUX_FS_TYPE}, name=root\n")
    subprocess.run(["sfdisk", "--quiet", str(disk)], input=layout, text=True, check=True, capture_output=True)
    efi = work / "efi.vfat"
    efi.unlink(missing_ok=True)
    run("mkfs.vfat", "-C", str(efi), str(efi_mib * 1024))
    run("dd", f"if={efi}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc", "status=none")
    run("dd", f"if={rootfs}", f"of={disk}", "bs=1M", f"seek={1 + efi_mib}", "conv=notrunc,sparse", "status=none")
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(disk), str(out))
    disk.unlink()
    efi.unlink()
    return out
