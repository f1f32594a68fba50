from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from pipeline.imagebuild import host


def test_device_mapper_detected_from_proc_misc(tmp_path):
    misc = tmp_path / "misc"
    misc.write_text("237 loop-control\n236 device-mapper\n")
    assert host.kernel_has_device_mapper(misc, tmp_path / "no-dm-module")


def test_no_device_mapper_without_misc_entry_or_module(tmp_path):
    misc = tmp_path / "misc"
    misc.write_text("237 loop-control\n229 fuse\n")
    assert not host.kernel_has_device_mapper(misc, tmp_path / "no-dm-module")


def test_device_mapper_detected_from_loaded_module(tmp_path):
    module = tmp_path / "dm_mod"
    module.mkdir()
    assert host.kernel_has_device_mapper(tmp_path / "missing", module)


def test_real_tools_required_only_with_device_mapper():
    assert "kpartx" in host.required_tools(device_mapper=True)
    assert "kpartx" not in host.required_tools(device_mapper=False)


def test_missing_tools_names_commands_and_packages():
    present = {"sudo", "tar", "gzip", "chroot", "partx", "fstrim", "losetup", "mkfs.ext4", "unshare"}
    missing = host.missing_tools(host.required_tools(False), which=lambda cmd: f"/usr/bin/{cmd}" if cmd in present else None)
    assert set(missing) == {"debootstrap", "sgdisk", "mkfs.vfat", "mksquashfs", "qemu-img", "zstd"}
    message = host.describe_missing(missing)
    assert "sgdisk" in message and "gdisk" in message and "qemu-utils" in message


def test_shims_install_idempotently_and_refuse_foreign_files(tmp_path):
    written = host.install_shims(tmp_path)
    assert sorted(Path(p).name for p in written) == ["dmsetup", "kpartx"]
    assert all((tmp_path / name).stat().st_mode & 0o111 for name in ("kpartx", "dmsetup"))
    assert host.install_shims(tmp_path) == []  # unchanged: nothing rewritten

    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "kpartx").write_text("#!/bin/sh\necho the admin's own\n")
    with pytest.raises(ApplianceError, match="not ours"):
        host.install_shims(foreign)


def test_remove_shims_removes_only_ours(tmp_path):
    host.install_shims(tmp_path)
    (tmp_path / "dmsetup").write_text("#!/bin/sh\n# someone else's\n")
    removed = host.remove_shims(tmp_path)
    assert [Path(p).name for p in removed] == ["kpartx"]
    assert (tmp_path / "dmsetup").exists()


def test_shims_carry_the_marker():
    for shim in host.SHIM_DIR.iterdir():
        assert host.SHIM_MARKER in shim.read_text()
