"""`appliance selftest nodes`, run on a controller whose compute nodes joined: instances spread
over every host, one on a node is reached over the tenant network and reaches the one on the
controller, its user-data ran, and the api suite's floating IP checks (SSH from this host,
50 MB each way, outbound NAT, a security group closing SSH) pass on it. One JSON line per
check (guest.emit); the last one, "servers", names the servers and their hosts.

Creates one server per host as ``lxc`` (the scheduler places them: nothing is forced) and
deletes them, unless ``keep``: then they stay for the caller, who deletes them.
"""

import base64
import json
import socket
import time

from appliance.selftest.floating_ips import floating_ip_checks
from appliance.selftest.guest import FAILED, KEY, LOGIN_USER, check, emit, patience, sh, ssh_cmd, wait_ssh
from appliance.selftest.guest import connect as guest_connect

MARKER_PATH = "/var/lib/nodes-user-data"
USER_DATA = """#cloud-config
write_files:
  - path: {path}
    content: "{token}\\n"
"""
PREFIX = "nodes-selftest"


def joined_nodes(paths) -> list[str]:
    """The names of the compute nodes the controller's registry records as joined."""
    from appliance.cluster.commands import registry_of

    return sorted(name for name, node in registry_of(paths).nodes().items() if node.state == "joined")


def main(outbound_probe=None, keep=False):
    """Every check; returns 1 when one failed (guest.FAILED), else 0. ``outbound_probe`` (HOST:PORT, a TCP
    service answering with the source address it saw) adds the outbound NAT check."""
    from appliance.agent.context import AgentContext, Paths

    context = AgentContext.load(Paths())
    site = context.site
    admin, lxc = guest_connect("admin", authorize=True), guest_connect("lxc", authorize=True)
    nodes = joined_nodes(context.paths)
    this_host = socket.gethostname().split(".")[0]

    def hypervisors():
        found = {h.name.split(".")[0]: h.state for h in admin.compute.hypervisors(details=True)}
        wanted = [this_host, *nodes]
        missing = [h for h in wanted if found.get(h) != "up"]
        assert nodes, "no compute node has joined this controller (appliance add-node, then join)"
        said = [f"{h} ({found.get(h) or 'not listed'})" for h in missing]
        assert not missing, f"not up: {', '.join(said)}"
        return ", ".join(f"{h} up" for h in wanted)

    if not check("every hypervisor up", hypervisors):
        return 1
    token = f"nodes-{time.time_ns()}"
    network = lxc.network.find_network(site.network.name, ignore_missing=False)
    servers = []
    state = {}

    def create():
        for old in lxc.compute.servers(name=f"^{PREFIX}"):
            lxc.compute.delete_server(old)
            lxc.compute.wait_for_delete(old, wait=120 * patience())
        started = time.monotonic()
        user_data = base64.b64encode(USER_DATA.format(path=MARKER_PATH, token=token).encode()).decode()
        # One request for them all: the scheduler places them one after the other, each
        # seeing the ones before it (its weighers prefer the host with the most free RAM).
        count = 1 + len(nodes)
        lxc.compute.create_server(
            name=PREFIX, flavor_id=lxc.compute.find_flavor(site.flavors[0].name).id,
            image_id=lxc.image.find_image(site.image_name).id, networks=[{"uuid": network.id}],
            security_groups=[{"name": "default"}], key_name=site.keypair_name, user_data=user_data,
            min_count=count, max_count=count)
        servers.extend(lxc.compute.servers(name=f"^{PREFIX}"))
        assert len(servers) == count, f"{len(servers)} servers made, asked for {count}"
        for index, server in enumerate(servers):
            servers[index] = lxc.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=2,
                                                         wait=300 * patience())
        return f"{len(servers)} ACTIVE {time.monotonic() - started:.1f} s after create"

    def spread():
        # The host is an admin's attribute; the project's user never sees it.
        hosts = {s.id: admin.compute.get_server(s.id).compute_host.split(".")[0] for s in servers}
        state["hosts"] = hosts
        assert set(hosts.values()) == {this_host, *nodes}, f"hosts {sorted(hosts.values())}, expected every one"
        state["on_node"] = next(s for s in servers if hosts[s.id] != this_host)
        state["on_controller"] = next(s for s in servers if hosts[s.id] == this_host)
        return ", ".join(sorted(hosts.values()))

    def address(server):
        return [a["addr"] for a in server.addresses.get(network.name, []) if a.get("version") == 4][0]

    namespace = context.profile.network.namespace(network.id)

    def on_node(command, **options):
        """ssh to the instance on the node through the one on this host: OVN's metadata
        namespace reaches only this chassis' instances (guest.ssh_cmd)."""
        return ssh_cmd(LOGIN_USER, address(state["on_node"]), command, netns=namespace,
                       via=address(state["on_controller"]), **options)

    def user_data_on_node():
        server, here = state["on_node"], state["on_controller"]
        wait_ssh(lxc, here, ssh_cmd(LOGIN_USER, address(here), "true", netns=namespace), timeout=180,
                 what=f"SSH from {namespace} to the instance on this host", per_try=60)
        command = f"cloud-init status --wait >/dev/null; sudo -n cat {MARKER_PATH}"
        result = wait_ssh(lxc, server, on_node(command), timeout=180,
                          what="SSH to the instance on a node through the one on this host", per_try=60)
        assert result.stdout.strip() == token, f"{MARKER_PATH} holds {result.stdout.strip()!r}"
        return f"{address(server)} on {state['hosts'][server.id]}, through {address(here)} on {this_host}"

    def tenant_both_ways():
        node_server, here = state["on_node"], state["on_controller"]
        said = []
        for source, target in ((node_server, here), (here, node_server)):
            # The other's SSH banner over TCP (the guest image has no ping).
            banner = f"timeout 10 bash -c 'exec 3<>/dev/tcp/{address(target)}/22 && head -c 8 <&3'"
            argv = on_node(banner, timeout=10) if source is node_server else \
                ssh_cmd(LOGIN_USER, address(source), banner, netns=namespace, timeout=10)
            result = sh(argv, timeout=60)
            assert result.returncode == 0 and result.stdout.startswith("SSH-2.0"), (
                f"{state['hosts'][source.id]} -> {state['hosts'][target.id]}: "
                f"{(result.stdout + result.stderr).strip()[-200:]}")
            said.append(f"{state['hosts'][source.id]} -> {state['hosts'][target.id]}:22")
        return ", ".join(said)

    try:
        if check("one server per host, ACTIVE", create) and check("the scheduler spread them over every host", spread):
            if sh(["test", "-f", KEY]).returncode == 0:
                if check("instance on a node: address, SSH over the tenant network, user-data ran",
                       user_data_on_node):
                    check("instances on the node and the controller reach each other", tenant_both_ways)
                if site.external.enabled:
                    floating_ip_checks(lxc, site, state["on_node"], LOGIN_USER, {}, True, outbound_probe)
            else:
                emit("SSH with the keypair's key", False, 0, "the keypair's private key is not on the appliance")
    finally:
        kept = {s.id: state.get("hosts", {}).get(s.id) for s in servers}
        if not keep:
            def delete():
                for server in servers:
                    lxc.compute.delete_server(server)
                for server in servers:
                    lxc.compute.wait_for_delete(server, wait=180 * patience())
                return f"{len(servers)} deleted"

            check("servers deleted", delete)
        emit("servers", True, 0, json.dumps({"kept": keep, "hosts": kept}))
    return 1 if FAILED else 0
