import os
import subprocess
from pathlib import Path

import pytest

from pipeline.imagebuild import dib, host


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


@pytest.mark.parametrize("files, removed", [
    ({}, []),
    ({"kpartx": "#!/bin/bash\n# kpartx stand-in (installed by pipeline.build.host).\n",
      "dmsetup": "#!/bin/sh\n# someone else's\n"}, ["kpartx"]),
    ({"dmsetup": "#!/bin/bash\n# (installed by pipeline.imagebuild.host)\n", "kpartx": "#!/bin/sh\necho admin\n"},
     ["dmsetup"]),
], ids=["none", "old-package-name", "foreign-kept"])
def test_remove_shims_removes_only_ours(tmp_path, files, removed):
    """Earlier versions installed the stand-ins into /usr/local/sbin; only ours go."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert [Path(p).name for p in host.remove_shims(tmp_path)] == removed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(files) - set(removed))


@pytest.mark.parametrize("device_mapper, dirs", [(True, []), (False, [str(host.SHIM_DIR)])])
def test_stand_ins_only_on_the_builds_path(device_mapper, dirs):
    report = host.HostReport(device_mapper=device_mapper)
    assert report.tool_dirs == dirs
    env = dib.build_environment({}, report.tool_dirs)
    assert env["PATH"].split(":")[:len(dirs)] == dirs


def test_sudo_stand_in_runs_the_command_with_the_builds_path(tmp_path):
    """As root it runs the command itself (so `sudo kpartx` finds the stand-in); options it
    knows are dropped, others go to the real sudo."""
    if os.geteuid() != 0:
        pytest.skip("the stand-in only acts for root (the build on a kernel without device-mapper runs as root)")
    env = dict(os.environ, PATH=f"{host.SHIM_DIR}:{os.environ['PATH']}")
    sudo = str(host.SHIM_DIR / "sudo")
    for argv in ([sudo, "sh", "-c", "command -v kpartx"], [sudo, "-E", "--", "sh", "-c", "command -v kpartx"]):
        found = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert found == str(host.SHIM_DIR / "kpartx"), argv


def test_shims_carry_the_marker():
    for shim in host.SHIM_DIR.iterdir():
        assert host.SHIM_MARKER in shim.read_text()
