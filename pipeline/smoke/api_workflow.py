"""The reference workflow through the OpenStack APIs, run ON the appliance.

`invoke smoke` sends this file's source over the target connection and runs it with the
appliance's python3, so it needs only what the appliance has (openstacksdk and the
installed pipeline package). It prints one JSON line per check.
"""

import json
import subprocess
import sys
import time

INSTANCE = "lxc_instance"


def emit(name, passed, seconds, detail=""):
    print(json.dumps({"name": name, "passed": passed, "seconds": round(seconds, 2), "detail": detail}), flush=True)


def check(name, func):
    start = time.monotonic()
    try:
        detail = func() or ""
        emit(name, True, time.monotonic() - start, detail)
        return True
    except Exception as exc:
        emit(name, False, time.monotonic() - start, (str(exc) or type(exc).__name__).splitlines()[0][:400])
        return False


def wait(what, probe, timeout, interval=1.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout} s")


def sh(cmd, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


KEY = "/etc/appliance/lxckey"
NO_SSH_GROUP = "smoke-no-ssh"


def ssh_cmd(user, address, command, netns=None, timeout=5):
    """ssh to an instance with the keypair's key, from ``netns`` or the appliance host itself."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return [*prefix, "ssh", "-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={timeout}", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            f"{user}@{address}", command]


def route_source(address):
    """The source address this host uses toward ``address`` (its uplink address for a public one)."""
    route = json.loads(sh(["ip", "-json", "route", "get", address]).stdout or "[{}]")
    return route[0].get("prefsrc")


def parse_args(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="api_workflow")
    parser.add_argument("--outbound-probe", metavar="HOST:PORT")
    return parser.parse_args(argv)


def main(argv=None):
    import openstack

    from pipeline.agent.context import AgentContext, Paths

    args = parse_args(sys.argv[1:] if argv is None else argv)
    context = AgentContext.load(Paths())
    site = context.site
    user = context.profile.settings.get("guest_user", "root")
    state = {}

    def connect(cloud):
        # A bounded wait per request, and retries when nova-api drops a connection without
        # answering (seen about once in four runs): a hung request must fail, not hang the run.
        conn = openstack.connect(cloud=cloud, api_timeout=120, connect_retries=3)
        conn.authorize()
        return conn

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
        alive = {a.binary for a in admin.network.agents() if a.is_alive and a.is_admin_state_up}
        wanted = {"neutron-linuxbridge-agent", "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent"}
        assert not wanted - alive, f"not alive: {sorted(wanted - alive)}"

    def image_active():
        image = admin.image.find_image(site.image_name)
        assert image is not None, f"no image {site.image_name}"
        assert image.status == "active", f"image is {image.status}"

    check("catalog has every service", catalog)
    check("compute services up", compute_up)
    check("network agents alive", agents_up)
    check("LXC image active", image_active)

    def create():
        for old in lxc.compute.servers(name=INSTANCE):
            lxc.compute.delete_server(old)
            lxc.compute.wait_for_delete(old, wait=120)
        network = lxc.network.find_network(site.network.name)
        request = dict(
            name=INSTANCE, flavor_id=lxc.compute.find_flavor(site.flavors[0].name).id,
            image_id=lxc.image.find_image(site.image_name).id, networks=[{"uuid": network.id}],
            security_groups=[{"name": "default"}], key_name=site.keypair_name)
        try:
            server = lxc.compute.create_server(**request)
        except Exception:
            # The request may or may not have reached Nova: use what it made, else ask again.
            made = list(lxc.compute.servers(name=INSTANCE))
            server = made[0] if made else lxc.compute.create_server(**request)
        state["created"] = time.monotonic()
        server = lxc.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=300)
        state["server"] = server
        state["network"] = network
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
        return f"qdhcp-{network.id}"

    def ping():
        ns = dhcp_namespace()
        wait("ping reply", lambda: sh(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", state["ip"]]).returncode == 0,
             timeout=90)
        return f"from {ns}, {time.monotonic() - state['created']:.1f} s after create"

    def ssh():
        cmd = ssh_cmd(user, state["ip"], "cat /proc/1/comm; hostname", netns=dhcp_namespace())
        result = wait("SSH login", lambda: (r := sh(cmd, timeout=30)).returncode == 0 and r, timeout=120, interval=2)
        return f"{result.stdout.split()} {time.monotonic() - state['created']:.1f} s after create"

    def virsh():
        instance_name = admin.compute.get_server(server.id).instance_name  # an admin-only attribute
        out = sh(["virsh", "--connect", "lxc:///", "list", "--all"]).stdout
        assert instance_name in out and "running" in out, f"{instance_name} not running in: {out.strip()}"
        return instance_name

    check("instance has an address on the tenant network", address)
    if "ip" in state:
        check("ping from the DHCP namespace", ping)
        if sh(["test", "-f", KEY]).returncode == 0:
            check("SSH with the keypair's key", ssh)
        else:
            emit("SSH with the keypair's key", False, 0, "the keypair is the operator's; its private key is not on the appliance")
    check("libvirt lists the LXC domain", virsh)
    have_key = sh(["test", "-f", KEY]).returncode == 0
    if site.external.enabled and "ip" in state:
        floating_ip_checks(lxc, site, server, user, state, have_key, args.outbound_probe)

    def delete():
        start = time.monotonic()
        lxc.compute.delete_server(server)
        lxc.compute.wait_for_delete(server, interval=1, wait=180)
        leftover = [line for line in sh(["losetup", "-l", "-n"]).stdout.splitlines() if server.id in line]
        assert not leftover, f"loop device still attached: {leftover}"
        return f"gone in {time.monotonic() - start:.1f} s, loop device released"

    check("delete -> gone", delete)


def floating_ip_checks(lxc, site, server, user, state, have_key, outbound_probe):
    """Floating IP from the external network: attached and ACTIVE; in host mode SSH to it from
    the appliance host itself, outbound NAT through the uplink, security groups enforced."""
    ext = site.external

    def attach():
        network = lxc.network.find_network(ext.name)
        assert network is not None, f"no external network {ext.name}"
        port = next(iter(lxc.network.ports(device_id=server.id)), None)
        assert port is not None, "the server has no port"
        fip = lxc.network.create_ip(floating_network_id=network.id, port_id=port.id)
        state["fip"] = fip
        state["attached"] = time.monotonic()
        fip = wait("floating IP ACTIVE", lambda: (f := lxc.network.get_ip(fip.id)).status == "ACTIVE" and f,
                   timeout=60)
        return f"{fip.floating_ip_address} on {ext.name}"

    if not check("floating IP attached and ACTIVE", attach):
        return
    address = state["fip"].floating_ip_address
    host_mode = ext.mode == "host"
    try:
        if host_mode and have_key:
            def ssh_fip():
                cmd = ssh_cmd(user, address, "hostname")
                result = wait("SSH to the floating IP", lambda: (r := sh(cmd, timeout=30)).returncode == 0 and r,
                              timeout=90, interval=1)
                return f"{user}@{address}: {result.stdout.strip()}, {time.monotonic() - state['attached']:.1f} s after attach"

            if check("SSH to the floating IP from the appliance host", ssh_fip) and outbound_probe:
                probe_host, probe_port = outbound_probe.rsplit(":", 1)

                def outbound_nat():
                    expected = route_source(probe_host)
                    script = f"exec 3<>/dev/tcp/{probe_host}/{probe_port} && head -n1 <&3"
                    result = sh(ssh_cmd(user, address, f"timeout 10 bash -c '{script}'"), timeout=40)
                    seen = result.stdout.strip()
                    assert result.returncode == 0, f"no answer from {outbound_probe}: {result.stderr.strip()[-200:]}"
                    assert seen == expected, f"{outbound_probe} saw {seen!r}, expected the uplink address {expected}"
                    return f"{outbound_probe} saw {seen}"

                check("outbound NAT from the instance through the uplink", outbound_nat)
            check("security group without SSH closes the floating IP", lambda: security_group_enforced(
                lxc, server, user, address))
    finally:
        def release():
            lxc.network.delete_ip(state["fip"])

        check("floating IP released", release)


def security_group_enforced(lxc, server, user, address):
    """With only an ICMP rule, the floating IP answers ping but refuses SSH; then back."""
    for old in lxc.network.security_groups(name=NO_SSH_GROUP):
        lxc.network.delete_security_group(old)
    group = lxc.network.create_security_group(name=NO_SSH_GROUP, description="smoke: ICMP only")
    try:
        lxc.network.create_security_group_rule(security_group_id=group.id, direction="ingress", ether_type="IPv4",
                                               protocol="icmp", remote_ip_prefix="0.0.0.0/0")
        lxc.compute.add_security_group_to_server(server, group)
        lxc.compute.remove_security_group_from_server(server, {"name": "default"})
        ssh = ssh_cmd(user, address, "true", timeout=3)
        # The agent applies the change within seconds, yet new connections from the appliance
        # itself were seen to pass for up to ~120 s after (the TCP TIME_WAIT timeout of
        # conntrack); wait out that much.
        refused = time.monotonic()
        wait("SSH refused under the ICMP-only group", lambda: sh(ssh, timeout=20).returncode != 0, timeout=200)
        refused = time.monotonic() - refused
        # Fails only if SSH answers again within 10 s: the rule change did not flap.
        for _ in range(3):
            assert sh(ssh, timeout=20).returncode != 0, "SSH answered under a group without a TCP 22 rule"
        assert sh(["ping", "-c1", "-W2", address]).returncode == 0, "the floating IP stopped answering ping"
    finally:
        lxc.compute.add_security_group_to_server(server, {"name": "default"})
        lxc.compute.remove_security_group_from_server(server, group)
        wait("SSH back with the default group", lambda: sh(ssh_cmd(user, address, "true"), timeout=20).returncode == 0,
             timeout=60)
        lxc.network.delete_security_group(group)
    return f"SSH refused after {refused:.0f} s, ping answered; restored"


if __name__ == "__main__":
    main()
    sys.exit(0)
