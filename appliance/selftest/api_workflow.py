"""`appliance selftest api`: the reference workflow through the OpenStack APIs, run on the
appliance (`invoke smoke` runs it over its SSH connection). One JSON line per check.
"""

import base64
import time

from appliance.selftest.escape_probes import run_escape_probes
from appliance.selftest.floating_ips import floating_ip_checks
from appliance.selftest.guest import KEY, LOGIN_USER, check, emit, patience, sh, ssh_cmd, wait, wait_ssh
from appliance.selftest.guest import connect as guest_connect

# What an instance's sshd says to root: cloud-init's disable_root command (cc_ssh), or ssh's
# own refusal when root has no authorized key.
ROOT_REFUSALS = ("Please login as the user", "Permission denied")

INSTANCE = "lxc_instance"
# A second instance from the same image: its machine-id must differ from the first's.
INSTANCE_2 = "lxc_instance_2"
# What user-data writes, and where; the smoke reads it back over SSH. The first instance gets
# #cloud-config, the second a shell script: both kinds of user-data are run.
MARKER_PATH = "/var/lib/smoke-user-data"
CLOUD_CONFIG_USER_DATA = """#cloud-config
write_files:
  - path: {path}
    content: "{token} cloud-config\\n"
"""
SCRIPT_USER_DATA = """#!/bin/sh
echo "{token} script" > {path}
"""




def main(outbound_probe=None):
    """Every check, one JSON line each; ``outbound_probe`` (HOST:PORT, a TCP service that
    answers with the source address it saw) adds the outbound NAT check."""
    from appliance.agent.context import AgentContext, Paths

    context = AgentContext.load(Paths())
    site = context.site
    state = {}

    def connect(cloud):
        # Retries matter here: nova-api dropped a connection without answering about once in four runs.
        return guest_connect(cloud, authorize=True)

    def tokens():
        state["admin"] = connect("admin")
        state["lxc"] = connect("lxc")

    if not check("token for admin and lxc", tokens):
        return
    admin, lxc = state["admin"], state["lxc"]

    def catalog():
        have = {s.type for s in admin.identity.services()}
        missing = {"identity", "image", "compute", "placement", "network"} - have
        assert not missing, f"missing from the catalog: {sorted(missing)}"

    def compute_up():
        up = {s.binary for s in admin.compute.services() if s.state == "up" and s.status == "enabled"}
        missing = {"nova-conductor", "nova-scheduler", "nova-compute"} - up
        assert not missing, f"not up: {sorted(missing)}"

    def agents_up():
        agents = list(admin.network.agents())
        alive = {a.binary for a in agents if a.is_alive and a.is_admin_state_up}
        wanted = set(context.profile.network.agents)
        assert not wanted - alive, f"not alive: {sorted(wanted - alive)}"
        # Only the profile's backend runs: an agent of another one (an L3 or DHCP agent
        # beside OVN) would serve the same networks twice.
        stray = {a.binary for a in agents} - wanted
        assert not stray, f"agents the profile does not run: {sorted(stray)}"

    def image_active():
        image = admin.image.find_image(site.image_name)
        assert image is not None, f"no image {site.image_name}"
        assert image.status == "active", f"image is {image.status}"

    check("catalog has every service", catalog)
    check("compute services up", compute_up)
    check("network agents alive, no other", agents_up)
    check("LXC image active", image_active)

    token = f"smoke-{time.time_ns()}"

    def boot_server(name, user_data):
        """Create a server with user_data (text) and wait for ACTIVE; returns it."""
        for old in lxc.compute.servers(name=name):
            lxc.compute.delete_server(old)
            lxc.compute.wait_for_delete(old, wait=120 * patience())
        network = lxc.network.find_network(site.network.name)
        request = dict(
            name=name, flavor_id=lxc.compute.find_flavor(site.flavors[0].name).id,
            image_id=lxc.image.find_image(site.image_name).id, networks=[{"uuid": network.id}],
            security_groups=[{"name": "default"}], key_name=site.keypair_name,
            user_data=base64.b64encode(user_data.format(token=token, path=MARKER_PATH).encode()).decode())
        try:
            server = lxc.compute.create_server(**request)
        except Exception:
            # The request may or may not have reached Nova: use what it made, else ask again.
            made = list(lxc.compute.servers(name=name))
            server = made[0] if made else lxc.compute.create_server(**request)
        state["network"] = network
        return lxc.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=300 * patience())

    def create():
        state["created"] = time.monotonic()
        state["server"] = boot_server(INSTANCE, CLOUD_CONFIG_USER_DATA)
        return f"ACTIVE {time.monotonic() - state['created']:.1f} s after create"

    if not check("server create -> ACTIVE", create):
        return
    server, network = state["server"], state["network"]

    def address():
        ips = [a["addr"] for a in server.addresses.get(network.name, []) if a.get("version") == 4]
        assert ips, f"no IPv4 address on {network.name}: {server.addresses}"
        state["ip"] = ips[0]
        return ips[0]

    def dhcp_namespace():
        return context.profile.network.namespace(network.id)

    def ping():
        ns = dhcp_namespace()
        wait("ping reply", lambda: sh(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", state["ip"]]).returncode == 0,
             timeout=90)
        return f"from {ns}, {time.monotonic() - state['created']:.1f} s after create"

    def guest_ssh(ip, command, user=LOGIN_USER):
        """Run command in the guest at ip as user, from the DHCP namespace; the finished process."""
        return sh(ssh_cmd(user, ip, command, netns=dhcp_namespace()), timeout=60)

    def guest_facts(ip):
        """Log in as LOGIN_USER once cloud-init has finished; {hostname, mtu, machine_id, marker, root}."""
        command = (f"cloud-init status --wait >/dev/null; hostname; cat /sys/class/net/eth0/mtu /etc/machine-id; "
                   f"sudo -n cat {MARKER_PATH}; sudo -n id -u")
        result = wait_ssh(lxc, server, ssh_cmd(LOGIN_USER, ip, command, netns=dhcp_namespace()), timeout=120,
                          what=f"SSH login as {LOGIN_USER}", per_try=60)
        lines = result.stdout.splitlines()
        assert len(lines) == 5, f"unexpected output: {result.stdout!r} {result.stderr.strip()!r}"
        return dict(zip(("hostname", "mtu", "machine_id", "marker", "root"), lines))

    def ssh():
        state["facts"] = guest_facts(state["ip"])
        return f"as {LOGIN_USER}, {time.monotonic() - state['created']:.1f} s after create"

    def user_data():
        marker = state["facts"]["marker"]
        assert marker == f"{token} cloud-config", f"{MARKER_PATH} holds {marker!r}, not what user-data wrote"
        return marker

    def hostname():
        expected = admin.compute.get_server(server.id).hostname  # Nova's sanitised form; admin-only
        got = state["facts"]["hostname"]
        assert got == expected, f"guest hostname {got!r}, server's {expected!r}"
        return got

    def mtu():
        expected = lxc.network.get_network(network.id).mtu
        got = state["facts"]["mtu"]
        assert got == str(expected), f"eth0 MTU {got}, network's {expected}"
        return got

    def sudo():
        assert state["facts"]["root"] == "0", f"sudo -n id -u gave {state['facts']['root']!r}"

    def root_refused():
        result = guest_ssh(state["ip"], "id -u", user="root")
        assert result.returncode != 0 and result.stdout.strip() != "0", "root logged in with the keypair's key"
        said = (result.stdout.strip() or result.stderr.strip() or "no output").splitlines()[0][:120]
        # The instance's sshd must be the one refusing (cloud-init's disable_root message, or
        # no accepted key); an unreachable instance refuses nothing.
        assert any(mark in result.stdout + result.stderr for mark in ROOT_REFUSALS), f"sshd did not answer: {said}"
        return said

    def second_instance():
        started = time.monotonic()
        other = boot_server(INSTANCE_2, SCRIPT_USER_DATA)
        state["server_2"] = other
        ips = [a["addr"] for a in other.addresses.get(network.name, []) if a.get("version") == 4]
        assert ips, f"no IPv4 address on {network.name}: {other.addresses}"
        facts = guest_facts(ips[0])
        assert facts["marker"] == f"{token} script", f"{MARKER_PATH} holds {facts['marker']!r}, not what the script wrote"
        first, second = state["facts"]["machine_id"], facts["machine_id"]
        assert len(second) == 32 and first != second, f"machine-ids {first!r} and {second!r}"
        return f"machine-ids {first[:8]}… {second[:8]}…; script ran; {time.monotonic() - started:.1f} s"

    def virsh():
        instance_name = admin.compute.get_server(server.id).instance_name  # an admin-only attribute
        out = sh(["virsh", "--connect", "lxc:///", "list", "--all"]).stdout
        assert instance_name in out and "running" in out, f"{instance_name} not running in: {out.strip()}"
        return instance_name

    check("instance has an address on the tenant network", address)
    if "ip" in state:
        check("ping from the DHCP namespace", ping)
        if sh(["test", "-f", KEY]).returncode == 0:
            if check(f"SSH as {LOGIN_USER} with the keypair's key", ssh):
                check("user-data (#cloud-config) ran", user_data)
                check("guest hostname is the server's", hostname)
                check("eth0 MTU is the network's", mtu)
                check(f"passwordless sudo for {LOGIN_USER}", sudo)
                run_escape_probes(dhcp_namespace(), state["ip"], admin.compute.get_server(server.id).instance_name)
            check("root login refused", root_refused)
            check("second instance: shell-script user-data ran, machine-id differs", second_instance)
        else:
            emit("SSH with the keypair's key", False, 0, "the keypair is the operator's; its private key is not on the appliance")
    check("libvirt lists the LXC domain", virsh)
    have_key = sh(["test", "-f", KEY]).returncode == 0
    if site.external.enabled and "ip" in state:
        floating_ip_checks(lxc, site, server, LOGIN_USER, state, have_key, outbound_probe)

    def delete():
        start = time.monotonic()
        servers = [server] + ([state["server_2"]] if "server_2" in state else [])
        for each in servers:
            lxc.compute.delete_server(each)
        for each in servers:
            lxc.compute.wait_for_delete(each, interval=1, wait=180 * patience())
        leftover = [line for line in sh(["losetup", "-l", "-n"]).stdout.splitlines()
                    if any(each.id in line for each in servers)]
        assert not leftover, f"loop device still attached: {leftover}"
        return f"{len(servers)} gone in {time.monotonic() - start:.1f} s, loop devices released"

    check("delete -> gone", delete)
