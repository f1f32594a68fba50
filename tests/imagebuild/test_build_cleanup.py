import subprocess
from pathlib import Path

from build_test_support import needs_loop

from pipeline.imagebuild.cleanup import LoopDevice, loops_backed_under, mounts_under, parse_losetup_json, release_build_resources

MOUNTINFO = """\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
90 22 0:50 / /var/tmp/build/tmp/dib_build.x rw - tmpfs tmpfs rw
91 90 0:51 / /var/tmp/build/tmp/dib_build.x/mnt rw - ext4 /dev/loop0p1 rw
92 91 0:5 / /var/tmp/build/tmp/dib_build.x/mnt/proc rw - proc none rw
93 22 0:52 / /var/tmp/build-other rw - tmpfs tmpfs rw
94 22 0:53 / /var/tmp/build/with\\040space rw - tmpfs tmpfs rw
"""


def test_mounts_under_are_deepest_first_and_exact():
    points = mounts_under(Path("/var/tmp/build"), MOUNTINFO)
    assert points[0] == "/var/tmp/build/tmp/dib_build.x/mnt/proc"
    assert points.index("/var/tmp/build/tmp/dib_build.x/mnt") < points.index("/var/tmp/build/tmp/dib_build.x")
    assert "/var/tmp/build-other" not in points  # a sibling with a common prefix
    assert "/var/tmp/build/with space" in points


def test_losetup_json_and_backing_files():
    devices = parse_losetup_json('{"loopdevices": [{"name": "/dev/loop0", "back-file": "/w/tmp/dib_image.a/image0.raw (deleted)"},'
                                 '{"name": "/dev/loop1", "back-file": "/elsewhere/x.img"}, {"name": "/dev/loop2", "back-file": null}]}')
    assert devices[0] == LoopDevice("/dev/loop0", "/w/tmp/dib_image.a/image0.raw (deleted)")
    assert [d.name for d in loops_backed_under(Path("/w"), devices)] == ["/dev/loop0"]
    assert parse_losetup_json("") == []


@needs_loop
def test_release_detaches_and_unmounts_what_a_dead_build_left(tmp_path):
    image = tmp_path / "tmp" / "dib_image.x" / "image0.raw"
    image.parent.mkdir(parents=True)
    with open(image, "wb") as handle:
        handle.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True).stdout.strip()
    mnt = tmp_path / "tmp" / "dib_build.x" / "mnt"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", device, str(mnt)], check=True)
    (mnt / "proc").mkdir()
    subprocess.run(["mount", "-t", "proc", "none", str(mnt / "proc")], check=True)

    actions = release_build_resources(tmp_path, log=lambda line: None)

    assert len(actions) == 3
    assert mounts_under(tmp_path) == []
    listed = subprocess.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE"], capture_output=True, text=True).stdout
    assert str(image) not in listed


def test_processes_rooted_under_a_build_chroot(tmp_path):
    from pipeline.imagebuild.cleanup import processes_rooted_under

    proc = tmp_path / "proc"
    for pid, root in (("101", "/var/tmp/build/tmp/dib_build.x/mnt"), ("102", "/"), ("103", "/var/tmp/build-other/mnt")):
        (proc / pid).mkdir(parents=True)
        (proc / pid / "root").symlink_to(root)
    (proc / "self").mkdir()
    assert processes_rooted_under(Path("/var/tmp/build"), proc) == [101]
