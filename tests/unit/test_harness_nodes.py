"""A second container on the first one's management segment: its name, address and link,
and the bridge the controller's uplink namespace becomes (pure logic; the boot itself is
tests/e2e/test_scale_out.py)."""

from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from pipeline.harness import local, nspawn, uplink
from pipeline.harness.target import ContainerTarget, boot_target

ART = Path("/nonexistent/artifacts")


@pytest.mark.parametrize("index, cidr, overlay", [(1, "10.254.0.11/24", "10.254.0.201/26"),
                                                  (2, "10.254.0.12/24", "10.254.0.202/26"),
                                                  (50, "10.254.0.60/24", "10.254.0.250/26")])
def test_a_nodes_addresses_are_beside_the_controllers(index, cidr, overlay):
    assert nspawn.node_cidr(index) == cidr and nspawn.overlay_cidr(index) == overlay
    assert nspawn.overlay_cidr(0) == "10.254.0.200/26"


@pytest.mark.parametrize("index", [0, -1, 51, "1", True])
def test_a_node_number_is_1_to_50(index):
    with pytest.raises(ApplianceError, match="expected 1 to 50"):
        nspawn.node_cidr(index)


def test_every_address_is_inside_the_harness_segment_and_each_once():
    import ipaddress

    segment = ipaddress.ip_network("10.254.0.0/24")
    management = [ipaddress.ip_interface(nspawn.node_cidr(i)) for i in range(1, 51)]
    overlay = [ipaddress.ip_interface(nspawn.overlay_cidr(i)) for i in range(0, 51)]
    assert all(a.network == segment for a in management)
    assert all(a.network.subnet_of(segment) and a.network.prefixlen > 24 for a in overlay)
    ips = [str(a.ip) for a in management + overlay] + [uplink.UPLINK_GATEWAY, nspawn.MANAGEMENT_IP]
    assert len(set(ips)) == len(ips)


@pytest.mark.parametrize("site, expected", [
    (None, "overlay_ip: 10.254.0.201\n"),
    ("join: {token: aj1.x}\n", "join: {token: aj1.x}\noverlay_ip: 10.254.0.201\n"),
    ("join: {token: aj1.x}", "join: {token: aj1.x}\noverlay_ip: 10.254.0.201\n"),
    ("overlay_ip: 10.254.0.222\n", "overlay_ip: 10.254.0.222\n"),
])
def test_the_site_names_the_overlay_address(site, expected):
    assert local.with_overlay_ip(site, "10.254.0.201") == expected


def test_node_names_and_state_dirs(monkeypatch):
    monkeypatch.delenv("APPLIANCE_BOOT_NAME", raising=False)
    assert local.node_name("trixie-epoxy", 1) == "trixie-epoxy-node1"
    assert local.node_name("trixie-epoxy", 2, "c1") == "c1-node2"
    assert local.state_dir("trixie-epoxy", local.node_name("trixie-epoxy", 1)) == \
        Path("/var/tmp/appliance-boot/trixie-epoxy-node1")


def test_a_node_target_is_named_after_its_controller(monkeypatch):
    monkeypatch.delenv("APPLIANCE_BOOT_NAME", raising=False)
    node = boot_target("container", "trixie-epoxy", ART, node=1)
    assert (node.name, node.node, node.controller) == ("trixie-epoxy-node1", 1, None)
    assert boot_target("container", "p", ART, node=2, controller="c1").name == "c1-node2"
    assert boot_target("container", "p", ART, node=1, name="n1").name == "n1"
    assert ContainerTarget(profile="p", artifacts=ART).name is None


@pytest.mark.parametrize("options, message", [
    ({"node": 1}, r"^--node: only for the container harness"),
    ({"controller": "c1"}, r"^--controller: only for the container harness"),
    ({"overlay": True}, r"^--overlay: only for the container harness"),
])
def test_the_vm_harness_has_no_nodes(options, message):
    with pytest.raises(ApplianceError, match=message):
        boot_target("vm", "p", ART, **options)


def test_segment_ports_fit_linux_and_differ_per_node():
    names = ["trixie-epoxy-node1", "trixie-epoxy-node2", "a-very-long-appliance-name-node1"]
    ports = [uplink.segment_port(n) for n in names] + [uplink.segment_port(n, "ov") for n in names]
    assert len(set(ports)) == len(ports) and all(len(p) <= 15 for p in ports)
    assert uplink.segment_port(names[0]) == ports[0]  # stable across a restart
    assert uplink.UPLINK_PEER not in ports and uplink.OVERLAY_PEER not in ports


def test_the_controllers_uplink_becomes_a_bridge_keeping_its_gateway_and_mac():
    ns = "uplink-trixie-epoxy"
    assert uplink.bridge_commands(ns, "02:00:00:00:00:01") == [
        ["-n", ns, "link", "add", "mgmtbr", "address", "02:00:00:00:00:01", "type", "bridge"],
        ["-n", ns, "link", "set", "mgmtbr", "up"],
        ["-n", ns, "addr", "del", "10.254.0.1/24", "dev", "mgmt1"],
        ["-n", ns, "addr", "add", "10.254.0.1/24", "dev", "mgmtbr"],
        ["-n", ns, "link", "set", "mgmt1", "master", "mgmtbr"]]


def test_a_node_has_no_lan_of_its_own(tmp_path):
    with pytest.raises(ApplianceError, match="no LAN of its own"):
        nspawn.boot(tmp_path / "none.raw", "n", tmp_path, site_yaml=None, authorized_key=None, lan=True,
                    management_cidr=nspawn.node_cidr(1), segment="c1")


def test_the_site_file_is_0600_from_the_first_byte(tmp_path):
    from pipeline.harness import container_fixups

    container_fixups.apply(tmp_path, site_yaml="join: {token: aj1.x}\n", authorized_key=None,
                           management_cidr=nspawn.node_cidr(1), overlay_cidr=nspawn.overlay_cidr(1))
    site = tmp_path / "etc/appliance/appliance.yaml"
    assert site.stat().st_mode & 0o777 == 0o600 and site.read_text() == "join: {token: aj1.x}\n"
    env = (tmp_path / "etc/appliance/harness.env").read_text()
    assert "MANAGEMENT_CIDR=10.254.0.11/24\n" in env and "OVERLAY_CIDR=10.254.0.201/26\n" in env


def test_boot_state_of_an_older_harness_loads_as_a_controller(tmp_path):
    import json

    (tmp_path / "state.json").write_text(json.dumps({"name": "p", "image": "i", "state_dir": str(tmp_path),
                                                     "netns": "appliance-p"}))
    state = nspawn.BootState.load(tmp_path)
    assert (state.management_ip, state.segment, state.overlay_cidr) == ("10.254.0.10", "", "")


def test_a_links_mac_is_the_same_at_every_boot_and_differs_between_links_and_machines():
    from pipeline.harness.container_fixups import link_mac

    mac = link_mac("scale-out-node1", "ovl0")
    assert mac == link_mac("scale-out-node1", "ovl0")
    assert int(mac.split(":")[0], 16) & 0b11 == 0b10  # locally administered, unicast
    assert len({mac, link_mac("scale-out-node1", "mgmt0"), link_mac("scale-out", "ovl0")}) == 3
