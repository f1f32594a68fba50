"""The controller's node-facing listeners (listeners.py): which are opened how, in which
order with the allow-list, and what keeps a controller from letting a node in."""

import re

import pytest

from appliance.cluster.allowlist import AllowList, guards
from appliance.cluster.listeners import SOUTHBOUND, ControllerAccess, Rebind, Rendered, SouthboundTLS, opener_problems, to_restart
from appliance.errors import ApplianceError
from pipeline.profiles import load_profile


@pytest.fixture(scope="module")
def epoxy():
    return load_profile("trixie-epoxy")


UNITS = ("nova-api", "nova-api-metadata", "nova-conductor")
RESTARTS = [
    ("nothing changed", [Rendered("/a", "x", "x", "nova-api-metadata")], [], []),
    ("the metadata API's bind file", [Rendered("/etc/default/nova-api-metadata", "new", "old", "nova-api-metadata"),
                                      Rendered("/etc/nova/nova.conf", "x", "x", "")],
     ["/etc/default/nova-api-metadata"], ["nova-api-metadata"]),
    ("a missing file is written", [Rendered("/a", "x", None, "nova-api")], ["/a"], ["nova-api"]),
    ("a file of every unit", [Rendered("/etc/nova/nova.conf", "new", "old", ""),
                              Rendered("/b", "new", "old", "nova-api")], ["/etc/nova/nova.conf", "/b"], list(UNITS)),
    ("a unit not of the service is not restarted", [Rendered("/a", "new", "old", "other")], ["/a"], []),
]


@pytest.mark.parametrize("label,files,paths,units", RESTARTS, ids=[r[0] for r in RESTARTS])
def test_what_a_rebind_writes_and_restarts(label, files, paths, units):
    assert to_restart(files, UNITS) == (paths, units)


class Opener:
    def __init__(self, log, name, tools=()):
        self.log, self.name, self.tools = log, name, tools

    def open(self):
        self.log.append(f"open {self.name}")

    def close(self):
        self.log.append(f"close {self.name}")


def _openers(log):
    return {SOUTHBOUND: Opener(log, "southbound", ("ovn-sbctl",)), ("nova", "tcp"): Opener(log, "metadata"),
            ("rabbitmq", "tcp"): Opener(log, "amqp")}


PROBLEMS = [
    ("all there", "trixie-epoxy", lambda log: _openers(log), set(), []),
    ("no nodes: port", "bookworm-zed", lambda log: {}, set(), ["profile bookworm-zed declares no port the nodes reach"]),
    ("no opener for AMQP and the metadata API", "trixie-epoxy", lambda log: {SOUTHBOUND: Opener(log, "sb")}, set(),
     ["nothing here opens rabbitmq's port 5672 over tcp", "nothing here opens nova's port 8775 over tcp"]),
    ("tools missing", "trixie-epoxy", lambda log: _openers(log), {"iptables-restore", "ovn-sbctl"},
     ["iptables-restore is not installed", "ovn-sbctl is not installed"]),
]


@pytest.mark.parametrize("label,profile,openers,missing,problems", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_what_keeps_a_controller_from_letting_a_node_in(label, profile, openers, missing, problems):
    assert opener_problems(load_profile(profile), openers([]), lambda tool: tool not in missing) == problems


class Firewall:
    def __init__(self, log):
        self.log = log

    def run(self, argv, stdin):
        self.log.append(" ".join(argv[:2]))
        return ""

    def check(self, argv):
        return False


def _access(tmp_path, profile, log, have_tool=lambda tool: True):
    fw = Firewall(log)
    allow_list = AllowList(tmp_path / "allowed.json", guards(profile), run=fw.run, check=fw.check)
    return ControllerAccess(profile, allow_list, _openers(log), have_tool), allow_list


def test_a_node_is_allowed_before_the_listeners_open(tmp_path, epoxy):
    log = []
    access, allow_list = _access(tmp_path, epoxy, log)
    access.ready()
    access.allow("c2", "10.254.0.11", "10.254.1.11")
    assert log == ["iptables-restore --noflush", "iptables -I", "open amqp", "open metadata", "open southbound"]
    assert allow_list.entries() == {"c2": ["10.254.0.11", "10.254.1.11"]}
    log.clear()
    access.forget("c2")
    access.close()
    assert log[:5] == ["iptables-restore --noflush", "iptables -I", "close amqp", "close metadata", "close southbound"]
    assert allow_list.entries() == {}


def test_a_controller_that_cannot_open_a_listener_lets_no_node_in(tmp_path, epoxy):
    log = []
    access, allow_list = _access(tmp_path, epoxy, log, have_tool=lambda tool: tool != "ovn-sbctl")
    for call in (access.ready, lambda: access.allow("c2", "10.254.0.11", "10.254.0.11")):
        with pytest.raises(ApplianceError) as caught:
            call()
        assert str(caught.value) == "this controller cannot let a node in: ovn-sbctl is not installed"
    assert log == [] and allow_list.entries() == {}


def test_the_southbound_opens_over_tls_with_rbac_on_the_management_address():
    calls = []
    sb = SouthboundTLS(run=lambda argv, stdin: calls.append(argv), address="10.254.0.10", port=6642,
                       key="/etc/appliance/tls/ovnsb.key", certificate="/var/lib/appliance/tls/ovnsb.crt",
                       ca_certificate="/var/lib/appliance/tls/ca.crt", ensure_certificate=lambda: calls.append("cert"))
    sb.open()
    assert calls == ["cert",
                     ["ovn-sbctl", "set-ssl", "/etc/appliance/tls/ovnsb.key", "/var/lib/appliance/tls/ovnsb.crt",
                      "/var/lib/appliance/tls/ca.crt"],
                     ["ovn-sbctl", "set-connection", "role=ovn-controller", "pssl:6642:10.254.0.10"]]
    calls.clear()
    sb.close()
    assert calls == [["ovn-sbctl", "del-connection"], ["ovn-sbctl", "del-ssl"]]


def test_a_rebind_renders_with_members_to_open_and_without_to_close():
    disk = {"/etc/default/nova-api-metadata": "loopback"}
    done = []

    def render(members):
        return [Rendered(path, "both" if members else "loopback", disk.get(path), "nova-api-metadata")
                for path in disk]

    def write(paths, members):
        done.append(("write", paths, members))
        disk.update({p: "both" if members else "loopback" for p in paths})

    rebind = Rebind("nova", render, write, lambda units: done.append(("restart", units)), UNITS)
    rebind.open()
    rebind.open()  # open already: nothing written or restarted
    rebind.close()
    assert done == [("write", ["/etc/default/nova-api-metadata"], True), ("restart", ["nova-api-metadata"]),
                    ("write", ["/etc/default/nova-api-metadata"], False), ("restart", ["nova-api-metadata"])]


def _bind_files(profile_name, members):
    from appliance.credentials import placeholder_secrets
    from appliance.render import HostFacts, render_files
    from appliance.site import SiteConfig

    profile, site = load_profile(profile_name), SiteConfig(management_ip="10.254.0.10")
    files = render_files(profile, site, HostFacts.from_site(site), placeholder_secrets(profile), members=members)
    return {f.spec.path: f.content.splitlines()[-1] for f in files if f.spec.path.startswith("/etc/default/")
            and f.spec.template == "etc/default/uwsgi-bind.j2"}


def test_with_members_the_metadata_api_listens_on_the_management_address_too(epoxy):
    alone, members = _bind_files("trixie-epoxy", False), _bind_files("trixie-epoxy", True)
    metadata = "/etc/default/nova-api-metadata"
    assert alone[metadata] == \
        'DAEMON_ARGS="--http-socket 127.0.0.1:8775 --ini /etc/nova/nova-api-metadata-uwsgi.ini"'
    assert members[metadata] == ('DAEMON_ARGS="--http-socket 127.0.0.1:8775 --http-socket 10.254.0.10:8775 '
                                 '--ini /etc/nova/nova-api-metadata-uwsgi.ini"')
    # Every other API binds as it did: only a nodes: port widens.
    assert {p: line for p, line in members.items() if p != metadata} == \
        {p: line for p, line in alone.items() if p != metadata}
    assert _bind_files("bookworm-zed", True) == _bind_files("bookworm-zed", False)


def _rendered(profile_name, members, *paths):
    from appliance.credentials import placeholder_secrets
    from appliance.render import HostFacts, render_files
    from appliance.site import SiteConfig

    profile, site = load_profile(profile_name), SiteConfig(management_ip="10.254.0.10")
    files = render_files(profile, site, HostFacts.from_site(site), placeholder_secrets(profile), members=members)
    return {f.spec.path: f.content for f in files if f.spec.path in paths}


AMQP = ("/etc/rabbitmq/rabbitmq-env.conf", "/etc/rabbitmq/rabbitmq.conf")


@pytest.mark.parametrize("profile_name,members,env_address,listeners", [
    ("trixie-epoxy", False, "127.0.0.1", []),
    ("trixie-epoxy", True, None, ["listeners.tcp.1 = 127.0.0.1:5672", "listeners.tcp.2 = 10.254.0.10:5672"]),
    ("bookworm-zed", True, "127.0.0.1", []),
])
def test_amqp_listens_on_the_management_address_only_with_members(profile_name, members, env_address, listeners):
    files = _rendered(profile_name, members, *AMQP)
    env = [line for line in files[AMQP[0]].splitlines() if line.startswith("NODE_IP_ADDRESS=")]
    assert env == ([f"NODE_IP_ADDRESS={env_address}"] if env_address else [])
    assert [line for line in files[AMQP[1]].splitlines() if line.startswith("listeners.")] == listeners


@pytest.mark.parametrize("members", [False, True])
def test_the_controllers_services_reach_the_database_and_amqp_on_loopback(members):
    conf = _rendered("trixie-epoxy", members, "/etc/nova/nova.conf")["/etc/nova/nova.conf"]
    assert re.search(r"^connection = mysql\+pymysql://nova:[^@\s]+@127\.0\.0\.1/nova$", conf, re.M)
    assert re.search(r"^transport_url = rabbit://openstack:[^@\s]+@127\.0\.0\.1$", conf, re.M)
