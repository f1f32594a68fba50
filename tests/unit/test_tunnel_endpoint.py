"""The Geneve endpoint on the userspace datapath (netbackend/tunnel.py)."""

import pytest

from appliance.agent.netbackend.tunnel import BRIDGE, endpoint_commands, interface_of, place_endpoint
from appliance.errors import ApplianceError


def _link(name, ip=None, prefix=24, mac="02:00:00:00:01:0a"):
    return {"ifname": name, "address": mac,
            "addr_info": [{"family": "inet", "local": ip, "prefixlen": prefix}] if ip else []}


ADDRS = [_link("lo", "127.0.0.1", 8, "00:00:00:00:00:00"), _link("mgmt0", "10.254.0.10", mac="02:00:00:00:00:0a"),
         _link("ovl0", "10.254.1.10")]
MOVE = [["ovs-vsctl", "--may-exist", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
         "fail_mode=standalone", "other_config:hwaddr=02:00:00:00:01:0a"],
        ["ovs-vsctl", "--may-exist", "add-port", BRIDGE, "ovl0"],
        ["ip", "addr", "del", "10.254.1.10/24", "dev", "ovl0"],
        ["ip", "addr", "replace", "10.254.1.10/24", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"]]

CASES = [
    ("kernel datapath: nothing", ADDRS, "system", "10.254.1.10", [], "kernel datapath"),
    ("overlay is the management address: nothing", ADDRS, "netdev", "10.254.0.10", [],
     "left where it is, so no other chassis can tunnel"),
    ("an interface of its own: onto the bridge", ADDRS, "netdev", "10.254.1.10", MOVE,
     f"moved from ovl0 onto {BRIDGE}"),
    ("on the bridge already", [*ADDRS[:2], _link("ovl0"), _link(BRIDGE, "10.254.1.10")], "netdev", "10.254.1.10",
     [], f"on {BRIDGE} already"),
]


@pytest.mark.parametrize("label,addresses,datapath,overlay,commands,phrase", CASES, ids=[c[0] for c in CASES])
def test_where_the_endpoint_goes(label, addresses, datapath, overlay, commands, phrase):
    got, what = endpoint_commands(addresses, datapath=datapath, overlay_ip=overlay, management_ip="10.254.0.10")
    assert got == commands and phrase in what and "\n" not in what


def test_an_overlay_address_on_no_interface_is_refused():
    with pytest.raises(ApplianceError, match="overlay_ip 10.254.1.99 is on no interface of this host"):
        endpoint_commands(ADDRS, datapath="netdev", overlay_ip="10.254.1.99", management_ip="10.254.0.10")


def test_interface_of_reads_ip_json():
    assert interface_of(ADDRS, "10.254.0.10") == ("mgmt0", 24, "02:00:00:00:00:0a")
    assert interface_of(ADDRS, "10.254.9.9") is None


def test_place_endpoint_runs_the_commands_and_says_what():
    import json
    import subprocess

    done, said = [], []

    def command(argv):
        done.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps(ADDRS) if argv[:2] == ["ip", "-j"] else "", "")

    place_endpoint(datapath="netdev", overlay_ip="10.254.1.10", management_ip="10.254.0.10", command=command,
                   say=said.append)
    assert done == [["ip", "-j", "addr", "show"], *MOVE] and "onto br-overlay" in said[0]


@pytest.mark.parametrize("datapath,overlay,enabled", [
    ("netdev", "10.254.1.10", True), ("netdev", "10.254.0.10", False), ("system", "10.254.1.10", False),
])
def test_the_chassis_step_enables_the_boot_unit_only_where_the_endpoint_moved(datapath, overlay, enabled):
    import json
    import subprocess

    done = []

    def command(argv):
        done.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps(ADDRS) if argv[:2] == ["ip", "-j"] else "", "")

    place_endpoint(datapath=datapath, overlay_ip=overlay, management_ip="10.254.0.10", command=command,
                   say=lambda line: None, at_boot=True)
    assert (["systemctl", "enable", "appliance-overlay-endpoint.service"] in done) is enabled


def test_both_roles_write_the_boot_unit():
    from appliance.roles import profile_for_role
    from pipeline.profiles import load_profile

    epoxy = load_profile("trixie-epoxy")
    path = "/etc/systemd/system/appliance-overlay-endpoint.service"
    assert path in {f.path for f in epoxy.files()}
    assert path in {f.path for f in profile_for_role(epoxy, "compute").files()}
