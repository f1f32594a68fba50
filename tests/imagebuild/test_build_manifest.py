import hashlib
import json

import pytest

from pipeline.imagebuild.manifest import Package, build_manifest, describe_artifact, parse_package_list, write_manifest


def test_parse_package_list_sorts_and_types():
    text = "nova-common\t2:26.2.2-1~deb12u5\tall\nbash\t5.2.15-2+b7\tamd64\n\n"
    assert parse_package_list(text) == [Package("bash", "5.2.15-2+b7", "amd64"), Package("nova-common", "2:26.2.2-1~deb12u5", "all")]


def test_parse_package_list_rejects_malformed_lines():
    with pytest.raises(ValueError, match="line 2"):
        parse_package_list("bash\t5.2\tamd64\nbroken line\n")


def test_describe_artifact(tmp_path):
    path = tmp_path / "appliance.raw"
    with open(path, "wb") as handle:
        handle.write(b"abc")
        handle.truncate(1 << 20)  # sparse tail
    art = describe_artifact(path)
    assert art.name == "appliance.raw" and art.size == 1 << 20
    assert art.allocated < art.size
    assert art.sha256 == hashlib.sha256(b"abc" + b"\0" * ((1 << 20) - 3)).hexdigest()


def test_manifest_shape_and_round_trip(tmp_path):
    (tmp_path / "a.img").write_bytes(b"x")
    manifest = build_manifest(profile="bookworm-zed", artifacts=[describe_artifact(tmp_path / "a.img")],
                              packages=[Package("bash", "5.2", "amd64")],
                              stages={"lxc-rootfs": 1.04, "appliance-image": 2.0}, inputs={"lxc_rootfs_key": "k"})
    assert manifest["profile"] == "bookworm-zed"
    assert manifest["artifacts"]["a.img"]["size"] == 1
    assert manifest["stages"] == {"lxc-rootfs": 1.0, "appliance-image": 2.0}
    assert manifest["total_seconds"] == 3.0
    assert manifest["packages"] == [{"name": "bash", "version": "5.2", "architecture": "amd64"}]
    write_manifest(tmp_path / "manifest.json", manifest)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
