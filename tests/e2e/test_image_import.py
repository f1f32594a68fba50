"""`appliance image import` on a booted appliance: a partitioned qcow2 built here (the
appliance's own guest root filesystem inside a GPT disk after an EFI partition) is imported,
an instance boots from it and is logged in to; a file that is no image is refused."""

import json
import subprocess

import pytest

from appliance.selftest.guest import LOGIN_USER

from .conftest import in_appliance
from .disk_images import gpt_qcow2

pytestmark = pytest.mark.e2e

IMAGE = "imported-gpt"
SERVER = "imported-gpt-1"

# Runs on the appliance: boot SERVER from the image, log in as the default user from the
# tenant network's namespace, print what the guest says, delete it.
BOOT_AND_LOGIN = r"""
import json, subprocess, sys, time
import openstack
from appliance.agent.context import AgentContext, Paths
image, server_name, user = sys.argv[1:4]
profile = AgentContext.load(Paths()).profile
c = openstack.connect(cloud="lxc")
net = c.network.find_network("nat")
server = c.compute.create_server(name=server_name, image_id=c.image.find_image(image).id,
    flavor_id=c.compute.find_flavor("lxc.medium").id, networks=[{"uuid": net.id}], key_name="lxckey")
try:
    server = c.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=300)
    ip = [a["addr"] for a in server.addresses["nat"] if a["version"] == 4][0]
    cmd = ["ip", "netns", "exec", profile.network.namespace(net.id), "ssh", "-i", "/etc/appliance/lxckey", "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
           f"{user}@{ip}", "cloud-init status --wait >/dev/null; hostname; cat /proc/1/comm"]
    deadline, out = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            out = r.stdout.split()
            break
        time.sleep(2)
    print(json.dumps({"login": out}))
finally:
    c.compute.delete_server(server)
    c.compute.wait_for_delete(server, wait=180)
"""

IMAGES_NAMED = r"""
import json, sys, openstack
c = openstack.connect(cloud="admin")
print(json.dumps([{"id": i.id, "status": i.status, "properties": {
    "hypervisor_type": i.hypervisor_type, "os_command_line": i.os_command_line, "architecture": i.architecture}}
    for i in c.image.images(name=sys.argv[1])]))
"""

DELETE_IMAGE = r"""
import sys, openstack
c = openstack.connect(cloud="admin")
for image in c.image.images(name=sys.argv[1]):
    c.image.delete_image(image)
"""


def import_loops():
    """Loop devices backed by anything of an import (its work dir or the files given to it).
    Only those: other appliances on the host attach and release loop devices meanwhile."""
    out = subprocess.run(["losetup", "--list", "--json"], capture_output=True, text=True).stdout
    devices = json.loads(out or '{"loopdevices": []}').get("loopdevices", [])
    marks = ("appliance-image-import", "imported-gpt", "/var/tmp/random", "/var/tmp/script", "/var/tmp/empty")
    return [d["name"] for d in devices if any(mark in (d.get("back-file") or "") for mark in marks)]


def staged_guest(root, tmp_path):
    """The appliance's own guest image as a raw filesystem file on the host."""
    images = root / "var/lib/appliance/images"
    if (images / "lxc-rootfs.img.zst").exists():
        raw = tmp_path / "rootfs.img"
        subprocess.run(["zstd", "-q", "-d", str(images / "lxc-rootfs.img.zst"), "-o", str(raw)], check=True)
        return raw
    return images / "lxc-rootfs.img"


def images_named(appliance, name):
    return json.loads(in_appliance(appliance, "python3", "-c", IMAGES_NAMED, name).stdout)


def test_partitioned_qcow2_is_imported_and_boots(appliance, tmp_path):
    root = appliance.merged
    qcow2 = gpt_qcow2(staged_guest(root, tmp_path), root / "var/tmp/imported-gpt.qcow2", tmp_path)
    in_appliance(appliance, "python3", "-c", DELETE_IMAGE, IMAGE)
    try:
        done = in_appliance(appliance, "appliance", "image", "import", "/var/tmp/imported-gpt.qcow2", "--name", IMAGE)
        assert "partition 2 of a GPT qcow2, x86_64" in done.stdout, done.stdout
        assert import_loops() == [], "the import left a loop device behind"
        (image,) = images_named(appliance, IMAGE)
        assert image["status"] == "active"
        assert {"hypervisor_type": "lxc", "os_command_line": "/sbin/init", "architecture": "x86_64"}.items() \
            <= image["properties"].items()
        booted = in_appliance(appliance, "python3", "-c", BOOT_AND_LOGIN, IMAGE, SERVER, LOGIN_USER, timeout=900)
        login = json.loads(booted.stdout.strip().splitlines()[-1])["login"]
        assert login == [SERVER, "systemd"], f"login as {LOGIN_USER}: {login}"
        # The same name again is refused before any work, and names the file.
        again = in_appliance(appliance, "appliance", "image", "import", "/var/tmp/imported-gpt.qcow2", "--name", IMAGE,
                             check=False)
        assert again.returncode == 2 and "exists already" in again.stderr
    finally:
        qcow2.unlink(missing_ok=True)
        in_appliance(appliance, "python3", "-c", DELETE_IMAGE, IMAGE, check=False)


@pytest.mark.parametrize("name, content", [
    ("random.img", bytes(range(256)) * 512),
    ("script.qcow2", b"#!/bin/sh\necho not an image\n"),
    ("empty.raw", b""),
])
def test_a_file_that_is_no_image_is_refused(appliance, name, content):
    path = appliance.merged / "var/tmp" / name
    path.write_bytes(content)
    try:
        done = in_appliance(appliance, "appliance", "image", "import", f"/var/tmp/{name}", "--name", "refused",
                            check=False)
    finally:
        path.unlink()
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"/var/tmp/{name}: not a disk image" in lines[0]
    assert images_named(appliance, "refused") == []
    assert import_loops() == []
