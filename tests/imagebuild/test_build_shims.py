"""The kpartx/dmsetup stand-ins, run for real against a partitioned loop device."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from build_test_support import needs_loop

from pipeline.imagebuild.host import SHIM_DIR

KPARTX = str(SHIM_DIR / "kpartx")
DMSETUP = str(SHIM_DIR / "dmsetup")


def run(cmd, dm_dir, check=True):
    return subprocess.run(cmd, env=dict(os.environ, DM_DIR=str(dm_dir)), capture_output=True, text=True, check=check)


def test_dmsetup_mknodes_is_a_noop(tmp_path):
    assert run([DMSETUP, "--noudevsync", "mknodes"], tmp_path).returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_dmsetup_remove_drops_only_the_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("")
    (tmp_path / "loop7p1").symlink_to(target)
    run([DMSETUP, "remove", "loop7p1"], tmp_path)
    assert not (tmp_path / "loop7p1").exists()
    assert target.exists()


def test_dmsetup_refuses_what_needs_device_mapper(tmp_path):
    done = run([DMSETUP, "create", "x", "--table", "0 1 zero"], tmp_path, check=False)
    assert done.returncode != 0 and "device-mapper" in done.stderr


def test_kpartx_rejects_plain_files(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 1024)
    done = run([KPARTX, "-av", str(image)], tmp_path, check=False)
    assert done.returncode != 0 and "not a block device" in done.stderr


@needs_loop
@pytest.mark.skipif(shutil.which("sgdisk") is None, reason="needs sgdisk (gdisk)")
def test_kpartx_exposes_and_removes_partitions(tmp_path):
    image = tmp_path / "disk.img"
    with open(image, "wb") as handle:
        handle.truncate(16 << 20)
    # sgdisk (gdisk) is a build prerequisite anyway; GPT or MBR makes no difference to partx.
    subprocess.run(["sgdisk", "--new=1:0:+4M", "--new=2:0:0", str(image)], capture_output=True, check=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True).stdout.strip()
    name = Path(device).name
    dm_dir = tmp_path / "mapper"
    try:
        out = run([KPARTX, "-uvs", device], dm_dir).stdout
        assert f"add map {name}p1" in out and f"add map {name}p2" in out
        for number in (1, 2):
            link = dm_dir / f"{name}p{number}"
            assert link.is_symlink() and Path(os.path.realpath(link)).is_block_device()
        run([KPARTX, "-av", device], dm_dir)  # a second add refreshes instead of failing
        run([KPARTX, "-d", device], dm_dir)
        assert list(dm_dir.iterdir()) == []
        assert not list(Path(f"/sys/block/{name}").glob(f"{name}p*"))
    finally:
        subprocess.run(["partx", "-d", device], capture_output=True)
        subprocess.run(["losetup", "-d", device], check=True)
