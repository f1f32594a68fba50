"""The smoke's listener check (pure logic): every TCP listener declared, none wider than
declared. The rows are listeners seen on a booted appliance before issue 13's fixes."""

import re

import pytest

from pipeline.profiles import load_profile
from pipeline.smoke.host_checks import scope_of, undeclared_listeners

MGMT = "10.254.0.10"

ROWS = [
    ("memcached on loopback", ("127.0.0.1", 11211, "memcached"), None),
    ("memcached on management: wider", (MGMT, 11211, "memcached"),
     "10.254.0.10:11211 (memcached) is management, wider than memcached's declared loopback"),
    ("memcached everywhere: wider", ("0.0.0.0", 11211, "memcached"), "is any, wider than memcached's declared loopback"),
    ("erlang distribution everywhere", ("0.0.0.0", 25672, "beam.smp"), "0.0.0.0:25672 (beam.smp) is any, wider than rabbitmq's"),
    ("epmd on every address", ("*", 4369, "epmd,systemd"), "*:4369 (epmd,systemd) is any, wider than rabbitmq's declared loopback"),
    ("metadata API everywhere", ("0.0.0.0", 8775, "uwsgi_python311"), "0.0.0.0:8775 (uwsgi_python311) is any, wider than nova's declared loopback"),
    ("lxc-net dnsmasq", ("10.0.3.1", 53, "dnsmasq"), "undeclared listener 10.0.3.1:53 (dnsmasq)"),
    ("AMQP on management", (MGMT, 5672, "beam.smp"),
     "10.254.0.10:5672 (beam.smp) is management, wider than rabbitmq's declared loopback"),
    ("AMQP on loopback", ("127.0.0.1", 5672, "beam.smp"), None),
    ("an API everywhere", ("0.0.0.0", 9696, "uwsgi_python311"), None),
    ("sshd everywhere", ("::", 22, "sshd"), None),
    ("MariaDB narrower than declared", ("127.0.0.1", 3306, "mariadbd"), None),
    ("RabbitMQ's one-off Erlang node on loopback", ("127.0.0.1", 46733, "beam.smp"), None),
    ("a one-off Erlang node everywhere", ("0.0.0.0", 46733, "beam.smp"), "undeclared listener 0.0.0.0:46733 (beam.smp)"),
    ("a one-off Erlang node on management", (MGMT, 46733, "beam.smp"), "undeclared listener 10.254.0.10:46733"),
    ("another program on a loopback ephemeral port", ("127.0.0.1", 46733, "python3"), "undeclared listener 127.0.0.1:46733"),
    ("beam.smp on a loopback port below the ephemeral range", ("127.0.0.1", 8080, "beam.smp"), "undeclared listener 127.0.0.1:8080"),
]


@pytest.mark.parametrize("label,listener,problem", ROWS, ids=[r[0] for r in ROWS])
def test_listener_rows(label, listener, problem):
    problems = undeclared_listeners([listener], load_profile("bookworm-zed"), MGMT)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_scopes():
    assert scope_of("::1", MGMT) == "loopback"
    assert scope_of("127.0.0.53%lo", MGMT) == "loopback"
    assert scope_of(MGMT, MGMT) == "management"
    assert scope_of("*", MGMT) == "any" and scope_of("192.0.2.1", MGMT) == "any"


@pytest.mark.parametrize("listener,has_members,problem", [
    (("10.254.0.10", 6642, "ovsdb-server"), False, "is management, wider than ovn's declared loopback"),
    (("10.254.0.10", 6642, "ovsdb-server"), True, None),
    (("0.0.0.0", 6642, "ovsdb-server"), True, "is any, wider than ovn's declared management"),
    (("10.254.0.10", 8775, "uwsgi_python313"), True, None),
    (("10.254.0.10", 6641, "ovsdb-server"), True, "is management, wider than ovn's declared loopback"),
    (("10.254.0.10", 11211, "memcached"), True, "wider than memcached's declared loopback"),
], ids=["southbound before nodes", "southbound with nodes", "southbound everywhere", "metadata API with nodes",
        "northbound never", "memcached never"])
def test_ports_the_nodes_reach_open_only_with_members(listener, has_members, problem):
    problems = undeclared_listeners([listener], load_profile("trixie-epoxy"), MGMT, has_members=has_members)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_the_join_service_may_listen_on_the_management_address_while_it_runs():
    assert undeclared_listeners([(MGMT, 9777, "python3")], load_profile("trixie-epoxy"), MGMT) == []
    problems = undeclared_listeners([("0.0.0.0", 9777, "python3")], load_profile("trixie-epoxy"), MGMT)
    assert len(problems) == 1 and "wider than join's declared management" in problems[0]


class _Host:
    """What ports_bound asks of a host: `ss -Hltn`, one listening socket a line."""

    def __init__(self, sockets):
        self.lines = [f"LISTEN 0 128 {address}:{port} 0.0.0.0:*" for address, port in sockets]

    def check_output(self, command):
        assert command == "ss -Hltn"
        return "\n".join(self.lines) + "\n"


def _fresh_sockets(profile):
    """Every declared port on its declared address, as a fresh appliance binds them: the
    on-demand join service is not running."""
    where = {"loopback": "127.0.0.1", "management": MGMT, "any": "0.0.0.0"}
    return [(where[p.bind], p.port) for svc in profile.services if not svc.on_demand for p in svc.ports]


# One row per state of the join service's port: (label, its sockets, started, problem).
JOIN_ROWS = [
    ("closed on a fresh appliance", [], False, None),
    ("listening though not started", [(MGMT, 9777)], False,
     "join: port 9777 listens on ['10.254.0.10'], though join runs only on demand"),
    ("started: on the management address", [(MGMT, 9777)], True, None),
    ("started: not listening", [], True, "join: nothing listens on 9777"),
    ("started: on every address", [("0.0.0.0", 9777)], True, "join: port 9777 on ['0.0.0.0'], expected only"),
]


@pytest.mark.parametrize("label,sockets,running,problem", JOIN_ROWS, ids=[r[0] for r in JOIN_ROWS])
def test_the_join_service_port_is_closed_unless_started(label, sockets, running, problem):
    from pipeline.smoke.host_checks import ports_bound

    profile = load_profile("trixie-epoxy")
    host = _Host(_fresh_sockets(profile) + sockets)
    if problem is None:
        assert ports_bound(host, profile, MGMT, on_demand_running=running).endswith(" ports")
    else:
        with pytest.raises(AssertionError, match=re.escape(problem)):
            ports_bound(host, profile, MGMT, on_demand_running=running)


@pytest.mark.parametrize("registry,members", [
    (None, False), ('{"version": 1, "nodes": {}}', False),
    ('{"version": 1, "nodes": {"c2": {"state": "invited"}}}', False),
    ('{"version": 1, "nodes": {"c2": {"state": "joining"}}}', True),
    ('{"version": 1, "nodes": {"c2": {"state": "invited"}, "c3": {"state": "joined"}}}', True),
], ids=["no registry", "no node", "invited only", "joining", "joined"])
def test_the_smoke_reads_members_from_the_registry(registry, members):
    from pipeline.smoke.host_checks import members_of

    assert members_of(registry) is members


def _with(sockets, port, addresses):
    return [s for s in sockets if s[1] != port] + [(a, port) for a in addresses]


# (label, sockets of 5672, 6642 and 8775 each, has_members, problem)
NODE_PORT_ROWS = [
    ("no members: loopback", ["127.0.0.1"], False, None),
    ("no members: management too", ["127.0.0.1", MGMT], False, "expected loopback only"),
    ("members: loopback and management", ["127.0.0.1", MGMT], True, None),
    ("members: loopback only", ["127.0.0.1"], True, f"expected loopback and {MGMT} (a node joined)"),
    ("members: every address", ["127.0.0.1", "0.0.0.0"], True, f"expected loopback and {MGMT}"),
]


@pytest.mark.parametrize("label,addresses,members,problem", NODE_PORT_ROWS, ids=[r[0] for r in NODE_PORT_ROWS])
def test_ports_the_nodes_reach_are_bound_as_the_members_say(label, addresses, members, problem):
    from pipeline.smoke.host_checks import ports_bound

    profile = load_profile("trixie-epoxy")
    sockets = _fresh_sockets(profile)
    for port in (5672, 6642, 8775):
        sockets = _with(sockets, port, addresses)
    if problem is None:
        assert ports_bound(_Host(sockets), profile, MGMT, has_members=members).endswith(" ports")
    else:
        with pytest.raises(AssertionError, match=re.escape(problem)):
            ports_bound(_Host(sockets), profile, MGMT, has_members=members)


@pytest.mark.parametrize("profile_name,service,port,address", [
    ("trixie-epoxy", "mariadb", 3306, "127.0.0.1"),
    ("trixie-epoxy", "keystone", 5000, MGMT),
    ("xenial-newton", "mariadb", 3306, MGMT),
])
def test_the_smoke_reaches_a_server_where_the_profile_binds_it(profile_name, service, port, address):
    from pipeline.smoke.host_checks import declared_address

    assert declared_address(load_profile(profile_name), service, port, MGMT) == address
