"""A reboot of the session's appliance (`invoke boot --restart`): the power-off ends without
anything left to systemd's final kill, everything comes back on its own, first boot does
not run again, the running instance comes back ACTIVE with its data, and the smoke passes.

This module runs last against the session appliance (pytest runs modules in name order)
and leaves the instance running, so the session's teardown (`--stop`) must release its
disk's loop device too (the `booted()` context asserts no loop device remains)."""

import json
from dataclasses import fields

import pytest

from pipeline.harness import local

from .conftest import PROFILE, in_appliance, smoke
from .test_appliance import external_host_side, journal

pytestmark = pytest.mark.e2e

# Run on the appliance as the lxc user: a server with a floating IP and a file written in it.
SERVER_WITH_DATA = r"""
import json, time, openstack
from pipeline.smoke import guest
from pipeline.agent.context import AgentContext, Paths
site = AgentContext.load(Paths()).site
c = openstack.connect(cloud="lxc", api_timeout=120)
network = c.network.find_network(site.network.name)
server = c.compute.create_server(
    name="restart-keeper", flavor_id=c.compute.find_flavor(site.flavors[0].name).id,
    image_id=c.image.find_image(site.image_name).id, networks=[{"uuid": network.id}],
    key_name=site.keypair_name)
server = c.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=300)
port = next(iter(c.network.ports(device_id=server.id)))
fip = c.network.create_ip(floating_network_id=c.network.find_network(site.external.name).id, port_id=port.id)
write = "echo written-before-restart-$(cat /proc/sys/kernel/random/uuid) > data.txt && sync && cat data.txt"
cmd = guest.ssh_cmd(guest.LOGIN_USER, fip.floating_ip_address, write)
result = guest.wait("SSH to the floating IP", lambda: (r := guest.sh(cmd, timeout=30)).returncode == 0 and r,
                    timeout=180, interval=2)
print(json.dumps({"id": server.id, "fip": fip.floating_ip_address, "data": result.stdout.strip()}))
"""

# After the restart: the server's status until ACTIVE (seconds), then its data file over SSH.
SERVER_BACK = r"""
import json, sys, time, openstack
from pipeline.smoke import guest
server_id, address = sys.argv[1], sys.argv[2]
c = openstack.connect(cloud="lxc", api_timeout=120)
start = time.monotonic()
status = guest.wait("server ACTIVE again", lambda: (s := c.compute.get_server(server_id).status) == "ACTIVE" and s,
                    timeout=int(sys.argv[3]), interval=2)
active = time.monotonic() - start
cmd = guest.ssh_cmd(guest.LOGIN_USER, address, "cat data.txt")
# The guest's DHCP client backs off (up to ~64 s between tries) while Neutron's DHCP agent
# resynchronises after the reboot.
result = guest.wait("SSH to the floating IP", lambda: (r := guest.sh(cmd, timeout=30)).returncode == 0 and r,
                    timeout=300, interval=2)
print(json.dumps({"active_s": round(active, 1), "ssh_s": round(time.monotonic() - start, 1),
                  "data": result.stdout.strip()}))
"""

# What systemd-shutdown prints when processes outlived every unit's stop (seen before the
# fix: the instance's systemd, respawning its services until the 90 s SIGKILL).
LEFT_TO_FINAL_KILL = ("Waiting for process:", "Sending SIGKILL to PID")
# Less than systemd-shutdown's own 90 s wait: a power-off that waited on it takes longer.
POWER_OFF_BOUND_S = 90


def test_restart_brings_everything_back(appliance):
    before = json.loads(in_appliance(appliance, "python3", "-c", SERVER_WITH_DATA).stdout)
    journal_before = journal(appliance)
    console_offset = appliance.console_log.stat().st_size

    state, power_off_s = local.restart(PROFILE, name=appliance.name)
    # The session fixture's state follows the restarted container (its pids changed).
    for field in fields(state):
        setattr(appliance, field.name, getattr(state, field.name))
    shutdown = appliance.console_log.read_bytes()[console_offset:].decode(errors="replace")
    print(f"power-off with 1 instance: {power_off_s:.1f} s")
    left = [line for line in shutdown.splitlines() if any(mark in line for mark in LEFT_TO_FINAL_KILL)]
    assert not left, "processes outlived the units' stop and were left to systemd-shutdown:\n" + shutdown[-3000:]
    assert "Shutdown of guest" in shutdown, "libvirt-guests did not shut the instance down:\n" + shutdown[-3000:]
    assert power_off_s < POWER_OFF_BOUND_S

    ready_s = local.wait_until_ready(appliance)
    print(f"restart → ready: {ready_s:.0f} s (from the container's start)")

    # First boot did not run again: its unit was skipped (the done marker) and the journal
    # is the one first boot left, every step done, none re-run.
    assert journal(appliance) == journal_before
    started = in_appliance(appliance, "systemctl", "show", "-p", "ExecMainStartTimestampMonotonic",
                           "appliance-firstboot").stdout.strip()
    assert started == "ExecMainStartTimestampMonotonic=0", started
    failed = in_appliance(appliance, "systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout
    assert not failed.strip(), failed

    host_side = external_host_side(appliance)
    assert len(host_side["nat_rules"]) == 1, host_side
    assert host_side == {**host_side, "bridges": ["br-external"], "forwarding": "1"}, host_side

    back = json.loads(in_appliance(appliance, "python3", "-c", SERVER_BACK, before["id"], before["fip"], "600").stdout)
    print(f"instance ACTIVE again {back['active_s']} s after ready, its file over SSH after {back['ssh_s']} s")
    assert back["data"] == before["data"]

    result = smoke(appliance)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
