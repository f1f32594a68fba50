"""Adjustments an appliance needs only when it runs as a systemd-nspawn container.

They are written into the overlay above the read-only image, so the image a VM or a bare
metal host boots never carries them. Each answers an obstacle measured on these hosts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# - machined: libvirt asks it to register each instance and fails ("NoMachineForPID");
#   without it libvirt manages the instance's cgroups itself.
# - udevd: rewrites the MAC address libvirt gives an instance's veth, breaking DHCP.
# - networkd-wait-online: waits 120 s for links nobody manages in the container.
MASKED_UNITS = (
    "systemd-machined.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-networkd-wait-online.service",
    # Fail in a container and are of no use there: the image's root partition growing
    # (the overlay is the root), the root remount, and the iSCSI initiator.
    "growroot.service",
    "systemd-remount-fs.service",
    "iscsid.service",
    "iscsid.socket",
)
MACHINED_DBUS_ACTIVATION = "usr/share/dbus-1/system-services/org.freedesktop.machine1.service"
LOOP_NODES = 64

FIXUP_SCRIPT = f"""#!/bin/sh
# The container's management network: a veth pair made inside its private network namespace;
# the harness then moves the far end (mgmt1) into an uplink namespace of its own, the
# default gateway (no route to the host's real network). Addresses come from the harness.
. /etc/appliance/harness.env
if ! ip link show mgmt0 >/dev/null 2>&1; then
    ip link add mgmt0 address "$MANAGEMENT_MAC" type veth peer name mgmt1
    ip addr add "$MANAGEMENT_CIDR" dev mgmt0
    ip link set mgmt1 up
    ip link set mgmt0 up
fi
[ -z "${{UPLINK_GATEWAY:-}}" ] || ip route replace default via "$UPLINK_GATEWAY" dev mgmt0
# A second interface into the harness's LAN namespace (the external network in provider mode).
if [ -n "${{LAN_INTERFACE:-}}" ] && ! ip link show "$LAN_INTERFACE" >/dev/null 2>&1; then
    ip link add "$LAN_INTERFACE" type veth peer name "$LAN_PEER"
    ip link set "$LAN_PEER" up
    ip link set "$LAN_INTERFACE" up
fi
# A second link for Geneve between the containers of a two-node harness (its far end goes to
# the controller's uplink namespace too); its address moves onto an Open vSwitch bridge at
# first boot (the agent's netbackend/tunnel.py).
if [ -n "${{OVERLAY_CIDR:-}}" ] && ! ip link show ovl0 >/dev/null 2>&1; then
    ip link add ovl0 address "$OVERLAY_MAC" type veth peer name ovl1
    ip addr add "$OVERLAY_CIDR" dev ovl0
    ip link set ovl1 up
    ip link set ovl0 up
fi
# nspawn mounts the cgroup v1 controllers read-only, but libvirt's LXC driver must create
# cgroups for instances: make them writable (a bind remount; a plain remount,rw fails).
for dir in /sys/fs/cgroup/*/; do
    dir=${{dir%/}}
    if grep -q " $dir cgroup " /proc/self/mounts; then
        mount -o remount,bind,rw "$dir" || true
    fi
done
# The container has a network namespace of its own, so its /proc/sys/net is its own too;
# nspawn still mounts it read-only, and os-vif must set bridge and forwarding sysctls.
mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net || true
# Nova attaches instance disks through loop devices; the container's /dev has none. They
# are made here rather than bind-mounted from the host: Nova's umount of a bind-mounted
# node unmounts the node itself and leaks the host's loop device.
[ -e /dev/loop-control ] || mknod -m 0660 /dev/loop-control c 10 237
i=0
while [ $i -lt {LOOP_NODES} ]; do
    [ -e /dev/loop$i ] || mknod -m 0660 /dev/loop$i b 7 $i
    i=$((i + 1))
done
"""

FIXUP_UNIT = """[Unit]
Description=Container-only adjustments for the appliance (nspawn harness)
DefaultDependencies=no
After=sys-fs-fuse-connections.mount
Before=sysinit.target network-pre.target libvirtd.service appliance-firstboot.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/appliance-container-fixups

[Install]
WantedBy=sysinit.target
"""


IMAGES_DIR = "var/lib/appliance/images"
GUEST_IMAGE_NAMES = ("lxc-rootfs.img.zst", "lxc-rootfs.img")


def built_guest_image(artifacts_dir: Path) -> Path | None:
    """The guest image built in this checkout's artifacts dir: the .zst that
    `invoke build-guest` writes, else the raw image `invoke build` writes; None if neither."""
    for name in GUEST_IMAGE_NAMES:
        if (artifacts_dir / name).is_file():
            return artifacts_dir / name
    return None


def stage_guest_image(root: Path, image: Path) -> None:
    """Put ``image`` where the appliance-lxc-image element stages the guest (first boot uploads
    it to Glance), replacing the image's copy and its description (sizes, sha256)."""
    import hashlib
    import json
    import subprocess

    images = root / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    for name in GUEST_IMAGE_NAMES:
        (images / name).unlink(missing_ok=True)
    target = images / image.name
    # Sparse: the raw guest image is mostly holes.
    subprocess.run(["cp", "--sparse=always", str(image.resolve()), str(target)], check=True)
    description = images / "lxc-rootfs.json"
    meta = json.loads(description.read_text()) if description.is_file() else {}
    meta["file"] = image.name
    if image.suffix == ".zst":
        digest = hashlib.sha256()
        with open(target, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        meta.update(compression="zstd", compressed_size=target.stat().st_size, compressed_sha256=digest.hexdigest())
        raw = image.with_name(image.name[: -len(".zst")])
        meta["size"] = raw.stat().st_size if raw.is_file() else None
    else:
        meta.update(compression=None, compressed_size=None, compressed_sha256=None, size=target.stat().st_size)
    description.write_text(json.dumps(meta, indent=2) + "\n")


def copy_source_tree(root: Path, source: Path, profile_yaml: str, guest_image: Path | None = None) -> None:
    """Development only (`invoke boot --from-tree`): this checkout's agent, templates and
    profile (``profile_yaml``: resolved, as the build writes it) over the image's copies (where the appliance-package and appliance-overlays
    elements install them), and its built guest image (``guest_image``, when given) over the
    image's, so a change to them is tried without rebuilding the appliance. Other element
    changes still need `invoke build`; tests and CI boot the image as built."""
    import shutil

    package = root / "usr/lib/python3/dist-packages/appliance"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(source / "appliance", package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    share = root / "usr/share/appliance"
    shutil.rmtree(share / "overlays", ignore_errors=True)
    shutil.copytree(source / "overlays", share / "overlays")
    (share / "profile.yaml").write_text(profile_yaml, encoding="utf-8")
    if guest_image is not None:
        stage_guest_image(root, guest_image)


def link_mac(name: str, link: str) -> str:
    """A locally administered unicast MAC address for ``link`` of the appliance ``name``, the
    same at every boot: the fixups make the veth pairs again at each boot, and a machine's
    NIC keeps its address across a reboot (a peer's Open vSwitch keeps the tunnel
    endpoint's in its neighbour cache)."""
    digest = hashlib.sha256(f"{name}/{link}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def apply(root: Path, *, site_yaml: str | None, authorized_key: str | None, management_cidr: str,
          uplink_gateway: str = "", lan_interface: str = "", lan_peer: str = "", overlay_cidr: str = "",
          name: str = "appliance") -> None:
    units = root / "etc/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        link = units / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    (root / MACHINED_DBUS_ACTIVATION).unlink(missing_ok=True)
    script = root / "usr/local/sbin/appliance-container-fixups"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(FIXUP_SCRIPT)
    script.chmod(0o755)
    (units / "appliance-container-fixups.service").write_text(FIXUP_UNIT)
    wants = units / "sysinit.target.wants"
    wants.mkdir(exist_ok=True)
    link = wants / "appliance-container-fixups.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/appliance-container-fixups.service")
    config_dir = root / "etc/appliance"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "harness.env").write_text(f"MANAGEMENT_CIDR={management_cidr}\nUPLINK_GATEWAY={uplink_gateway}\n"
                                            f"LAN_INTERFACE={lan_interface}\nLAN_PEER={lan_peer}\n"
                                            f"OVERLAY_CIDR={overlay_cidr}\nMANAGEMENT_MAC={link_mac(name, 'mgmt0')}\n"
                                            f"OVERLAY_MAC={link_mac(name, 'ovl0')}\n")
    if site_yaml is not None:
        # 0600 from the first byte: a node's site config carries its join token.
        site = config_dir / "appliance.yaml"
        site.unlink(missing_ok=True)
        with open(os.open(site, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
            handle.write(site_yaml)
    if authorized_key:
        ssh = root / "root/.ssh"
        ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = ssh / "authorized_keys"
        keys.write_text(authorized_key.strip() + "\n")
        keys.chmod(0o600)
