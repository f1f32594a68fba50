"""Floating IPs in the smoke: attached and ACTIVE; in host mode SSH to one from the
appliance host itself, outbound NAT through the uplink, security groups enforced on it."""

import json
import time

from appliance.selftest.guest import check, sh, ssh_cmd, ssh_outcome, wait, wait_ssh

NO_SSH_GROUP = "smoke-no-ssh"
# Enough segments that a path which loses or corrupts some of them cannot pass by luck (a
# userspace switch dropped partially checksummed TCP while SSH's handshake still got through).
BULK_BYTES = 50 * 10**6


def bulk_copy(user, address, size=BULK_BYTES):
    """``size`` random bytes to the instance and back over SSH, compared by SHA-256."""
    import hashlib
    import os
    import subprocess

    from appliance.selftest.guest import patience

    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    bound = 120 * patience()
    started = time.monotonic()
    sent = subprocess.run(ssh_cmd(user, address, "cat > /tmp/smoke-bulk && sha256sum < /tmp/smoke-bulk"),
                          input=data, capture_output=True, timeout=bound)
    assert sent.returncode == 0, f"upload failed: {sent.stderr.decode(errors='replace').strip()[-200:]}"
    assert sent.stdout.decode().split()[0] == digest, "the instance received different bytes"
    back = subprocess.run(ssh_cmd(user, address, "cat /tmp/smoke-bulk && rm /tmp/smoke-bulk"),
                          capture_output=True, timeout=bound)
    assert back.returncode == 0, f"download failed: {back.stderr.decode(errors='replace').strip()[-200:]}"
    assert hashlib.sha256(back.stdout).hexdigest() == digest, "the appliance received different bytes"
    return f"{2 * size / 10**6:.0f} MB in {time.monotonic() - started:.1f} s, SHA-256 equal"


def route_source(address):
    """The source address this host uses toward ``address`` (its uplink address for a public one)."""
    route = json.loads(sh(["ip", "-json", "route", "get", address]).stdout or "[{}]")
    return route[0].get("prefsrc")


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
                result = wait_ssh(lxc, server, cmd, timeout=90, what="SSH to the floating IP")
                return f"{user}@{address}: {result.stdout.strip()}, {time.monotonic() - state['attached']:.1f} s after attach"

            if check("SSH to the floating IP from the appliance host", ssh_fip):
                check(f"{BULK_BYTES // 10**6} MB each way over SSH to the floating IP",
                      lambda: bulk_copy(user, address))
                if outbound_probe:
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
        # Refused is a failure within ConnectTimeout; a hung attempt was connected before the
        # change reached the agent, so it does not count.
        wait("SSH refused under the ICMP-only group", lambda: ssh_outcome(ssh) == "failed", timeout=200)
        refused = time.monotonic() - refused
        # Fails only if SSH answers again within 10 s: the rule change did not flap.
        for _ in range(3):
            outcome = ssh_outcome(ssh)
            assert outcome == "failed", f"SSH {outcome} (TCP 22 reached the instance) under a group without a TCP 22 rule"
        assert sh(["ping", "-c1", "-W2", address]).returncode == 0, "the floating IP stopped answering ping"
    finally:
        lxc.compute.add_security_group_to_server(server, {"name": "default"})
        lxc.compute.remove_security_group_from_server(server, group)
        wait("SSH back with the default group", lambda: ssh_outcome(ssh_cmd(user, address, "true")) == "ran",
             timeout=60)
        lxc.network.delete_security_group(group)
    return f"SSH refused after {refused:.0f} s, ping answered; restored"
