"""Host checks through testinfra: units, ports, files, RabbitMQ and MariaDB hardening."""

from __future__ import annotations

import json
import re
import shlex

from appliance.agent.context import Paths
from appliance.agent.steps_dashboard import DASHBOARD_SERVICE
from appliance.profiles import Profile, parse_profile
from appliance.schema import from_mapping
from appliance.site import SiteConfig
from appliance.tls import TlsPaths

from .report import Report

# Where the appliance keeps them: its own Paths, the one place they are named.
PROFILE_PATH = str(Paths().profile)
JOURNAL_PATH = str(Paths().journal)
FACTS_PATH = str(Paths().facts)
SECRETS_PATH = str(Paths().secrets)
SITE_PATH = str(Paths().site)
NODES_PATH = str(Paths().state_dir / "cluster" / "nodes.json")


def appliance_profile(host) -> Profile:
    """The profile the appliance was built with, less the services its site config turns
    off (the agent validated that file at first boot; only its values are read here)."""
    import yaml

    profile = parse_profile(yaml.safe_load(host.file(PROFILE_PATH).content_string), PROFILE_PATH)
    site_file = host.file(SITE_PATH)
    given = (yaml.safe_load(site_file.content_string) or {}) if site_file.exists else {}
    return profile.active(from_mapping(SiteConfig, {**profile.site_defaults, **given}, SITE_PATH))


# Run on the appliance: the login page through the management address, trusting only the
# appliance's CA (the certificate must name that address), and plain HTTP's redirect.
# Prints "<HTTPS status> <password field present> <HTTP status> <Location>".
DASHBOARD_PROBE = r"""
import http.client, ssl, sys
address, webroot, ca = sys.argv[1:4]
tls = http.client.HTTPSConnection(address, 443, timeout=300, context=ssl.create_default_context(cafile=ca))
tls.request("GET", webroot + "auth/login/")
page = tls.getresponse()
body = page.read().decode("utf-8", "replace")
plain = http.client.HTTPConnection(address, 80, timeout=300)
plain.request("GET", webroot)
redirect = plain.getresponse()
print(page.status, "password" in body, redirect.status, redirect.getheader("Location"))
"""


def dashboard_login_page(host, profile: Profile, management_ip: str) -> str:
    """The dashboard's login page answers 200 over HTTPS verified with the appliance's CA,
    and HTTP on the same address redirects to HTTPS."""
    webroot = profile.settings.get("dashboard_webroot", "/")
    result = host.run(f"python3 -c {shlex.quote(DASHBOARD_PROBE)} {management_ip} {webroot} {TlsPaths().ca_cert}")
    assert result.rc == 0, (result.stderr.strip().splitlines() or ["no output"])[-1]
    status, form, redirect, location = result.stdout.split()
    assert (status, form) == ("200", "True"), f"login page: HTTP {status}, password field {form}"
    assert redirect in ("301", "302") and location == f"https://{management_ip}{webroot}", \
        f"plain HTTP answered {redirect} {location}"
    return f"https://{management_ip}{webroot}auth/login/ 200, http → {location}"


def listening(host) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket."""
    out = host.check_output("ss -Hltn")
    sockets = []
    for line in out.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        sockets.append((address.strip("[]"), int(port)))
    return sockets


# Address classes, narrowest first: a listener may be narrower than declared, never wider.
SCOPES = ("loopback", "management", "any")


def scope_of(address: str, management_ip: str) -> str:
    """The class of a listening address: loopback, management, or any (a wildcard, or any
    other address: reachable from a network the appliance does not own)."""
    address = address.split("%", 1)[0].strip("[]")
    if address.startswith("127.") or address == "::1":
        return "loopback"
    if address == management_ip:
        return "management"
    return "any"


def listeners(host) -> list[tuple[str, int, str]]:
    """(address, port, process names) of every listening TCP socket of the host's network
    namespace (instances' and routers' namespaces are separate and not listed)."""
    out = host.check_output("ss -Hltnp")
    found = []
    for line in out.splitlines():
        words = line.split()
        address, _, port = words[3].rpartition(":")
        found.append((address.strip("[]"), int(port), ",".join(sorted(set(re.findall(r'\("([^"]+)"', line))))))
    return found


# RabbitMQ's server starts a one-off Erlang node every 60 s to keep epmd alive
# (rabbit_epmd_monitor → rabbit_nodes_common:ensure_epmd) and each CLI call starts one; each
# listens for Erlang distribution on a port the kernel picks from its ephemeral range
# (net.ipv4.ip_local_port_range, 32768 and up by default) while it lives. Loopback only.
ONE_OFF_NODE_PROCESS = "beam.smp"
EPHEMERAL_PORTS_FROM = 32768


def undeclared_listeners(found: list[tuple[str, int, str]], profile: Profile, management_ip: str, *,
                         has_members: bool = False) -> list[str]:
    """Listeners the profile does not declare, or bound wider than declared (pure logic).
    A one-off Erlang node's ephemeral port on loopback is neither. ``has_members``: the
    controller has compute nodes, so ports that say ``nodes:`` may listen on the management
    address too (docs/scale-out.md, "Listeners"); the smoke passes False until nodes exist."""
    declared = {port.port: (svc.name, port.scope(has_members=has_members)) for svc in profile.services
                for port in svc.ports if port.protocol == "tcp"}
    problems = []
    for address, port, process in found:
        scope = scope_of(address, management_ip)
        where = f"{address}:{port} ({process or 'unknown process'})"
        if (port not in declared and process == ONE_OFF_NODE_PROCESS and port >= EPHEMERAL_PORTS_FROM
                and scope == "loopback"):
            continue
        if port not in declared:
            problems.append(f"undeclared listener {where}")
        elif SCOPES.index(scope) > SCOPES.index(declared[port][1]):
            problems.append(f"{where} is {scope}, wider than {declared[port][0]}'s declared {declared[port][1]}")
    return problems


def only_declared_listeners(host, profile: Profile, management_ip: str, *, has_members: bool = False) -> str:
    found = listeners(host)
    problems = undeclared_listeners(found, profile, management_ip, has_members=has_members)
    assert not problems, "; ".join(problems)
    return f"{len(found)} listeners, all declared"


def no_stray_lxc_network(host) -> str:
    """The lxc package's lxc-net (lxcbr0, dnsmasq on 10.0.3.1, a MASQUERADE rule) is off."""
    problems = []
    if host.run("ip link show lxcbr0").rc == 0:
        problems.append("bridge lxcbr0 exists")
    state = host.run("systemctl is-enabled lxc-net.service").stdout.strip()
    if state not in ("masked", "disabled", ""):
        problems.append(f"lxc-net.service is {state}")
    nat = host.run("iptables -w -t nat -S POSTROUTING").stdout
    if "10.0.3.0/24" in nat:
        problems.append("a NAT rule for 10.0.3.0/24 exists")
    assert not problems, "; ".join(problems)
    return ""


def first_boot_complete(host) -> str:
    journal = json.loads(host.file(JOURNAL_PATH).content_string)
    unfinished = [n for n, r in journal["steps"].items() if r["state"] != "done"]
    assert not unfinished, f"steps not done: {', '.join(unfinished)}"
    assert journal.get("completed_at"), "the journal has no completion time"
    total = sum(r["seconds"] or 0 for r in journal["steps"].values())
    return f"{len(journal['steps'])} steps, {total:.0f} s"


def socket_listening(host, unit: str) -> bool:
    triggers = host.run(f"systemctl show -p TriggeredBy --value {unit}").stdout.split()
    return any(host.run(f"systemctl is-active --quiet {t}").rc == 0 for t in triggers if t.endswith(".socket"))


def units_running(host, profile: Profile) -> str:
    bad = []
    for unit in profile.units():
        service = host.service(unit)
        if not service.is_running and service.is_enabled and socket_listening(host, unit):
            continue  # socket-activated and idle (libvirtd): its next client starts it
        if not service.is_running or not service.is_enabled:
            bad.append(f"{unit} (running={service.is_running}, enabled={service.is_enabled})")
    assert not bad, "; ".join(bad)
    return f"{len(profile.units())} units"


def members_of(nodes_json: str | None) -> bool:
    """Whether the controller's node registry (its text, None when there is none) lists a
    node that is joining or joined (appliance.cluster.registry.has_members)."""
    if not nodes_json:
        return False
    nodes = json.loads(nodes_json).get("nodes", {})
    return any(node.get("state") in ("joining", "joined") for node in nodes.values())


def has_members(host) -> bool:
    registry = host.file(NODES_PATH)
    return members_of(registry.content_string if registry.exists else None)


def ports_bound(host, profile: Profile, management_ip: str, *, on_demand_running: bool = False,
                has_members: bool = False) -> str:
    """Every declared port listens on its declared address class. An on-demand service's
    ports (the join service's 9777) listen only while it runs: closed on an appliance with no
    pending invitation, which is what the smoke boots; ``on_demand_running`` expects them open.
    ``has_members``: a port the nodes reach (``nodes:``) listens on loopback and on the
    management address (docs/scale-out.md, "Listeners")."""
    sockets = listening(host)
    wildcard = {"0.0.0.0", "*", "::"}
    problems = []
    for svc in profile.services:
        for port in svc.ports:
            addresses = {a for a, p in sockets if p == port.port}
            if svc.on_demand and not on_demand_running:
                if addresses:
                    problems.append(f"{svc.name}: port {port.port} listens on {sorted(addresses)}, though "
                                    f"{svc.name} runs only on demand and was not started")
                continue
            if not addresses:
                problems.append(f"{svc.name}: nothing listens on {port.port}")
            elif port.nodes and has_members and port.bind == "loopback":
                if addresses - {"127.0.0.1", "::1", management_ip} or management_ip not in addresses:
                    problems.append(f"{svc.name}: port {port.port} on {sorted(addresses)}, expected loopback and "
                                    f"{management_ip} (a node joined)")
            elif port.bind == "management" and addresses != {management_ip}:
                problems.append(f"{svc.name}: port {port.port} on {sorted(addresses)}, expected only {management_ip}")
            elif port.bind == "loopback" and addresses - {"127.0.0.1", "::1"}:
                problems.append(f"{svc.name}: port {port.port} on {sorted(addresses)}, expected loopback only")
            elif port.bind == "any" and not addresses & (wildcard | {management_ip}):
                problems.append(f"{svc.name}: port {port.port} not reachable on {management_ip}")
    assert not problems, "; ".join(problems)
    return f"{sum(len(s.ports) for s in profile.services if on_demand_running or not s.on_demand)} ports"


def config_files(host, profile: Profile) -> str:
    problems = []
    for spec in profile.files():
        f = host.file(spec.path)
        if not f.exists:
            problems.append(f"{spec.path} missing")
        elif spec.holds_secrets and f.mode != spec.mode_bits:
            problems.append(f"{spec.path} is {oct(f.mode)}, expected {spec.mode}")
        elif f.user != spec.owner:
            problems.append(f"{spec.path} owned by {f.user}, expected {spec.owner}")
    secrets = host.file(SECRETS_PATH)
    if not secrets.exists or secrets.mode != 0o600 or secrets.user != "root":
        problems.append(f"{SECRETS_PATH} must exist, root-owned, 0600")
    assert not problems, "; ".join(problems)
    return f"{len(profile.files())} files"


def rabbitmq_has_no_guest(host) -> str:
    users = host.check_output("rabbitmqctl -q list_users")
    names = {line.split()[0] for line in users.splitlines() if line.strip()}
    assert "guest" not in names, "the guest user exists"
    assert "openstack" in names, "the openstack user is missing"
    return ""


def rabbitmq_one_off_nodes_on_loopback(host) -> str:
    """The one-off Erlang nodes RabbitMQ starts (see ONE_OFF_NODE_PROCESS) inherit the
    server's environment; one started the same way (`appliance selftest rabbitmq-node`)
    must listen on loopback only."""
    result = host.run("python3 -m appliance selftest rabbitmq-node")
    assert result.rc == 0, (result.stderr.strip().splitlines() or ["no output"])[-1]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    addresses = lines[-1]["addresses"] if lines else []
    wider = [a for a in addresses if scope_of(a.rpartition(":")[0], "") != "loopback"]
    assert addresses and not wider, f"a one-off Erlang node listens on {' '.join(addresses)}"
    return " ".join(addresses)


def declared_address(profile: Profile, service: str, port: int, management_ip: str) -> str:
    """Where a client on the appliance reaches ``service``'s ``port``: loopback when the profile
    binds it there, else the management address."""
    bind = next(p.bind for p in profile.service(service).ports if p.port == port)
    return "127.0.0.1" if bind == "loopback" else management_ip


def mariadb_root_socket_only(host, address: str) -> str:
    """Root is refused over TCP at ``address`` (where MariaDB listens) and has only the
    unix-socket account."""
    remote = host.run(f"mariadb --protocol=TCP -h {address} -u root --password=wrong -e 'SELECT 1'")
    assert remote.rc != 0, "root logged in over TCP"
    assert re.search(r"Access denied|not allowed to connect", remote.stderr), remote.stderr.strip()
    rows = host.check_output("mariadb -N -e \"SELECT CONCAT(User,'@',Host) FROM mysql.user WHERE User IN ('root','')\"")
    assert rows.split() == ["root@localhost"], f"unexpected root/anonymous accounts: {rows.split()}"
    plugin = host.check_output("mariadb -N -e \"SELECT plugin FROM mysql.user WHERE User='root'\"")
    assert "unix_socket" in plugin, f"root authenticates with {plugin.strip()}"
    return ""


def run_host_checks(host, report: Report) -> Profile | None:
    profile_box: list[Profile] = []
    report.check("first boot journal complete", lambda: first_boot_complete(host))
    if not report.check("profile readable", lambda: profile_box.append(appliance_profile(host))):
        return None
    profile = profile_box[0]
    facts = json.loads(host.file(FACTS_PATH).content_string)
    report.check("services enabled and running", lambda: units_running(host, profile))
    members = has_members(host)
    report.check("ports on the right addresses",
                 lambda: ports_bound(host, profile, facts["management_ip"], has_members=members))
    report.check("only declared listeners, none wider than declared",
                 lambda: only_declared_listeners(host, profile, facts["management_ip"], has_members=members))
    report.check("no lxc-net bridge, dnsmasq or NAT rule", lambda: no_stray_lxc_network(host))
    report.check("config files present, secrets 0600", lambda: config_files(host, profile))
    report.check("RabbitMQ has no guest user", lambda: rabbitmq_has_no_guest(host))
    report.check("RabbitMQ's one-off Erlang nodes on loopback only",
                 lambda: rabbitmq_one_off_nodes_on_loopback(host))
    report.check("MariaDB root by unix socket only", lambda: mariadb_root_socket_only(
        host, declared_address(profile, "mariadb", 3306, facts["management_ip"])))
    if profile.has_service(DASHBOARD_SERVICE):
        report.check("dashboard login page over HTTPS with the appliance's CA; HTTP redirects",
                     lambda: dashboard_login_page(host, profile, facts["management_ip"]))
    return profile
