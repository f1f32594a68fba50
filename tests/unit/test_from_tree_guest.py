"""`invoke boot --from-tree` stages the checkout's built guest image over the image's."""

import hashlib
import json

import pytest

from pipeline.harness import container_fixups as cf


@pytest.mark.parametrize("present, chosen", [
    (["lxc-rootfs.img.zst", "lxc-rootfs.img"], "lxc-rootfs.img.zst"),  # invoke build-guest writes both
    (["lxc-rootfs.img"], "lxc-rootfs.img"),  # invoke build writes only the raw one
    ([], None),
])
def test_built_guest_image_prefers_the_compressed_one(tmp_path, present, chosen):
    for name in present:
        (tmp_path / name).write_bytes(b"x")
    found = cf.built_guest_image(tmp_path)
    assert (found.name if found else None) == chosen


def overlay_with_image_copy(tmp_path):
    root = tmp_path / "root"
    images = root / cf.IMAGES_DIR
    images.mkdir(parents=True)
    (images / "lxc-rootfs.img.zst").write_bytes(b"the image's own guest")
    (images / "lxc-rootfs.json").write_text(json.dumps({"name": "debian-lxc", "file": "lxc-rootfs.img.zst",
                                                        "compressed_size": 21, "compressed_sha256": "old"}))
    return root, images


def test_staging_the_compressed_guest_replaces_the_image_copy(tmp_path):
    root, images = overlay_with_image_copy(tmp_path)
    built = tmp_path / "built"
    built.mkdir()
    (built / "lxc-rootfs.img.zst").write_bytes(b"new guest, compressed")
    (built / "lxc-rootfs.img").write_bytes(b"new guest, raw, bigger")
    cf.stage_guest_image(root, built / "lxc-rootfs.img.zst")
    assert (images / "lxc-rootfs.img.zst").read_bytes() == b"new guest, compressed"
    meta = json.loads((images / "lxc-rootfs.json").read_text())
    assert meta["name"] == "debian-lxc" and meta["file"] == "lxc-rootfs.img.zst"
    assert meta["compressed_sha256"] == hashlib.sha256(b"new guest, compressed").hexdigest()
    assert meta["size"] == len(b"new guest, raw, bigger")


def test_staging_a_raw_guest_removes_the_compressed_copy(tmp_path):
    # The agent uploads the .zst when there is one: it must not find the image's.
    root, images = overlay_with_image_copy(tmp_path)
    raw = tmp_path / "lxc-rootfs.img"
    raw.write_bytes(b"raw guest")
    cf.stage_guest_image(root, raw)
    assert sorted(p.name for p in images.iterdir()) == ["lxc-rootfs.img", "lxc-rootfs.json"]
    meta = json.loads((images / "lxc-rootfs.json").read_text())
    assert meta["file"] == "lxc-rootfs.img" and meta["compression"] is None and meta["size"] == 9
