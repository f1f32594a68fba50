"""The allow-list in front of the node-facing ports: its rules, its file, its commands."""

import json

import pytest

from appliance.cluster.allowlist import CHAIN, AllowList, Guard, check_address, guards, ruleset
from appliance.errors import ApplianceError
from pipeline.profiles import load_profile

EPOXY = (Guard("tcp", 5672), Guard("tcp", 6642), Guard("tcp", 8775))
HEAD = ["*filter", f":{CHAIN} - [0:0]", f"-A {CHAIN} -i lo -j RETURN"]
DROP_TCP = f"-A {CHAIN} -p tcp -m multiport --dports 5672,6642,8775 -j DROP"


def test_the_guarded_ports_are_the_profiles_nodes_ports():
    assert guards(load_profile("trixie-epoxy")) == EPOXY
    assert guards(load_profile("bookworm-zed")) == ()


RULES = [
    ("no node: loopback only", EPOXY, [], HEAD + [DROP_TCP, "COMMIT"]),
    ("one node, two addresses", EPOXY, ["10.254.0.11", "10.254.1.11"],
     HEAD + [f"-A {CHAIN} -s 10.254.0.11/32 -j RETURN", f"-A {CHAIN} -s 10.254.1.11/32 -j RETURN", DROP_TCP, "COMMIT"]),
    ("an address once, in numeric order", EPOXY, ["10.254.0.12", "10.254.0.9", "10.254.0.12"],
     HEAD + [f"-A {CHAIN} -s 10.254.0.9/32 -j RETURN", f"-A {CHAIN} -s 10.254.0.12/32 -j RETURN", DROP_TCP,
             "COMMIT"]),
    ("a protocol a line", (Guard("tcp", 6642), Guard("udp", 6081)), ["10.254.0.11"],
     HEAD + [f"-A {CHAIN} -s 10.254.0.11/32 -j RETURN", f"-A {CHAIN} -p tcp -m multiport --dports 6642 -j DROP",
             f"-A {CHAIN} -p udp -m multiport --dports 6081 -j DROP", "COMMIT"]),
    ("nothing guarded: an empty chain", (), ["10.254.0.11"], ["*filter", f":{CHAIN} - [0:0]", "COMMIT"]),
]


@pytest.mark.parametrize("label,guarded,addresses,lines", RULES, ids=[r[0] for r in RULES])
def test_rules(label, guarded, addresses, lines):
    assert ruleset(guarded, addresses) == "\n".join(lines) + "\n"


@pytest.mark.parametrize("address,problem", [
    ("10.254.0.11/24", "is not an IPv4 address"), ("fe80::1", "is not an IPv4 address"),
    ("-j ACCEPT", "is not an IPv4 address"), ("0.0.0.0", "not a unicast address"),
    ("127.0.0.1", "not a unicast address"), ("224.0.0.1", "not a unicast address"),
    ("169.254.1.1", "not a unicast address"),
])
def test_a_rule_names_only_another_hosts_address(address, problem):
    with pytest.raises(ApplianceError, match=problem):
        check_address(address)


class Recorder:
    """iptables as far as AllowList asks: each command recorded; ``-C`` and ``-L`` answer
    from the jump and chain the commands made."""

    def __init__(self, jump=False, chain=False):
        self.calls, self.jump, self.chain = [], jump, chain

    def run(self, argv, stdin):
        self.calls.append((argv, stdin))
        if argv[0] == "iptables-restore":
            self.chain = True
        elif argv[1] == "-I":
            self.jump = True
        elif argv[1] == "-D":
            self.jump = False
        elif argv[1] == "-X":
            self.chain = False
        return ""

    def check(self, argv):
        self.calls.append((argv, "?"))
        return self.jump if argv[1] == "-C" else self.chain


def _list(tmp_path, ipt):
    return AllowList(tmp_path / "cluster" / "allowed.json", EPOXY, run=ipt.run, check=ipt.check)


def test_allowing_a_node_loads_the_chain_then_jumps_to_it_once(tmp_path):
    ipt = Recorder()
    allow = _list(tmp_path, ipt)
    allow.allow("c2", ["10.254.0.11", "10.254.0.11"])
    allow.allow("c3", ["10.254.0.12"])
    commands = [argv for argv, _ in ipt.calls]
    assert commands == [["iptables-restore", "--noflush"], ["iptables", "-C", "INPUT", "-j", CHAIN],
                        ["iptables", "-I", "INPUT", "1", "-j", CHAIN],
                        ["iptables-restore", "--noflush"], ["iptables", "-C", "INPUT", "-j", CHAIN]]
    assert "-s 10.254.0.11/32" in ipt.calls[3][1] and "-s 10.254.0.12/32" in ipt.calls[3][1]
    path = tmp_path / "cluster" / "allowed.json"
    assert json.loads(path.read_text()) == {"c2": ["10.254.0.11"], "c3": ["10.254.0.12"]}
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700


def test_forgetting_the_last_node_keeps_guarding_until_closed(tmp_path):
    ipt = Recorder()
    allow = _list(tmp_path, ipt)
    allow.allow("c2", ["10.254.0.11"])
    allow.forget("c2")
    allow.forget("c2")  # gone already: no error
    assert ipt.calls[-2][1] == ruleset(EPOXY, []) and ipt.jump and ipt.chain
    before = len(ipt.calls)
    allow.close()
    allow.close()  # closed already: nothing to do
    assert not ipt.jump and not ipt.chain
    assert [argv[1] for argv, stdin in ipt.calls[before:] if stdin != "?"] == ["-D", "-F", "-X"]


def test_a_damaged_file_is_refused_naming_it(tmp_path):
    ipt = Recorder()
    allow = _list(tmp_path, ipt)
    allow.path.parent.mkdir()
    allow.path.write_text("{not json")
    with pytest.raises(ApplianceError, match="allowed.json is damaged: not JSON"):
        allow.allow("c2", ["10.254.0.11"])
    allow.path.write_text('{"c2": "10.254.0.11"}')
    with pytest.raises(ApplianceError, match="expected node names with their addresses"):
        allow.forget("c2")
    assert ipt.calls == []
