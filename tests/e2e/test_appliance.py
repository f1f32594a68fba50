"""The whole path on a real booted appliance: first boot, smoke, idempotency, failure."""

import json
import os
import re
import signal
import time

import pytest

from pipeline.harness import nspawn
from pipeline.profiles import load_profile

from .conftest import PROFILE, in_appliance, smoke

pytestmark = pytest.mark.e2e

DELETE_IMAGE = r"""
import openstack, sys
c = openstack.connect(cloud="admin")
for image in c.image.images(name=sys.argv[1]):
    c.image.delete_image(image)
"""

# The tenant network, its subnet and the router, as if first boot had not made them yet.
DELETE_NETWORK = r"""
import openstack, sys
c = openstack.connect(cloud="admin")
network = c.network.find_network(sys.argv[1])
router = c.network.find_router(sys.argv[2], ignore_missing=True)
if router is not None:
    for port in c.network.ports(device_id=router.id, device_owner="network:router_interface"):
        c.network.remove_interface_from_router(router, port_id=port.id)
    c.network.delete_router(router)
if network is not None:
    c.network.delete_network(network)
"""

# Counted on the appliance with the admin credentials first boot wrote.
COUNT_RESOURCES = r"""
import json, openstack
c = openstack.connect(cloud="admin")
print(json.dumps({
    "users": len(list(c.identity.users())),
    "projects": len(list(c.identity.projects())),
    "roles": len(list(c.identity.roles())),
    "services": len(list(c.identity.services())),
    "endpoints": len(list(c.identity.endpoints())),
    "networks": len(list(c.network.networks())),
    "subnets": len(list(c.network.subnets())),
    "routers": len(list(c.network.routers())),
    "router_ports": len(list(c.network.ports(device_owner="network:router_interface"))),
    "security_group_rules": len(list(c.network.security_group_rules())),
    "images": len(list(c.image.images())),
    "flavors": len(list(c.compute.flavors())),
    "keypairs": len(list(c.compute.keypairs())),
}))
"""


SITE_NAMES = r"""
import json
from appliance.agent.context import AgentContext, Paths
site = AgentContext.load(Paths()).site
print(json.dumps({"image": site.image_name, "network": site.network.name, "router": site.network.router}))
"""


def resource_counts(state):
    return json.loads(in_appliance(state, "python3", "-c", COUNT_RESOURCES).stdout)


def journal(state):
    return json.loads(in_appliance(state, "cat", "/var/lib/appliance/firstboot.json").stdout)


def test_first_boot_reports_cloud_ready(appliance):
    status = in_appliance(appliance, "python3", "-m", "appliance", "status", check=False)
    assert status.stdout.startswith("appliance: cloud ready"), status.stdout
    timings = {name: rec["seconds"] for name, rec in journal(appliance)["steps"].items()}
    print("first-boot step timings:", timings)


def test_open_vswitch_datapath_is_the_kernels_only_where_its_module_is(appliance):
    """OVN profiles: the datapath first boot chose, recorded, shown and on br-int. A container
    shares the host's kernel: the kernel datapath only if that kernel has the module."""
    facts = json.loads(in_appliance(appliance, "cat", "/var/lib/appliance/facts.json").stdout)
    if not facts.get("datapath"):
        pytest.skip("the profile under test runs no Open vSwitch (ML2/Linux bridge)")
    expected = "system" if os.path.exists("/sys/module/openvswitch") else "netdev"
    on_bridge = in_appliance(appliance, "ovs-vsctl", "get", "bridge", "br-int", "datapath_type").stdout.strip()
    status = in_appliance(appliance, "python3", "-m", "appliance", "status", check=False).stdout
    assert (facts["datapath"], on_bridge.strip('"')) == (expected, expected)
    assert f"Open vSwitch datapath {expected}" in status, status


# Placement's view of the host's vCPUs (VCPU inventory of every resource provider).
VCPU_INVENTORY = r"""
import json, openstack
c = openstack.connect(cloud="admin")
print(json.dumps([{"total": i.total, "allocation_ratio": i.allocation_ratio}
                  for rp in c.placement.resource_providers()
                  for i in c.placement.resource_provider_inventories(rp) if i.resource_class == "VCPU"]))
"""


def test_placement_offers_the_profiles_vcpus_per_cpu(appliance):
    """Nova writes its initial ratio only when it first registers the host; the profile's
    cpu_allocation_ratio is what the host offers (not Nova's default of the release)."""
    wanted = load_profile(PROFILE).settings["cpu_allocation_ratio"]
    inventories = json.loads(in_appliance(appliance, "python3", "-c", VCPU_INVENTORY).stdout)
    assert inventories and all(i["allocation_ratio"] == wanted for i in inventories), (wanted, inventories)


# oslo.messaging's wait for an RPC reply, as the services load it.
REPLY_WAIT = r"""
import inspect
from oslo_messaging._drivers import amqpdriver
print(inspect.getsource(amqpdriver.ReplyWaiters.get))
"""


def test_rpc_replies_are_read_when_they_arrive(appliance):
    """elements/appliance-rpc-reply: no RPC caller sleeps a fixed 0.5 s before it reads its
    reply (oslo.messaging >= 14.4 does; Zed's blocks on the queue)."""
    source = in_appliance(appliance, "python3", "-c", REPLY_WAIT).stdout
    assert "time.sleep(0.5)" not in source, source


def test_console_is_read_as_it_is_written(appliance):
    """The harness drains the container's /dev/console into console.log: 256 KiB (more than a
    pseudo-TTY buffers) are written without blocking, and the last line arrives. Without it
    the container's systemd blocks on its console (see nspawn._start_nspawn)."""
    mark = f"console-drain-{time.time_ns()}"
    script = f"head -c 262144 /dev/zero | tr '\\0' '.' | fold -w 128 > /dev/console; echo {mark} > /dev/console"
    in_appliance(appliance, "timeout", "30", "sh", "-c", script)
    for _ in range(20):
        if mark in appliance.console_log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{mark} written to /dev/console never reached {appliance.console_log}")


def test_smoke_passes(appliance):
    result = smoke(appliance)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\d+ passed, 0 failed$", result.stdout, re.M)


def external_host_side(state) -> dict:
    """The external network's host side as the kernel has it: our bridge's device (a Linux
    bridge, or with OVN the OVS bridge's internal port), our NAT rules, forwarding."""
    nat = in_appliance(state, "iptables", "-t", "nat", "-S", "POSTROUTING").stdout
    links = json.loads(in_appliance(state, "ip", "-json", "link", "show").stdout)
    return {
        "nat_rules": [line for line in nat.splitlines() if "appliance-external" in line],
        "bridges": [link["ifname"] for link in links if link["ifname"] == "br-external"],
        "forwarding": in_appliance(state, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip(),
    }


def test_rerun_on_finished_appliance_changes_nothing(appliance):
    before = resource_counts(appliance)
    plain = in_appliance(appliance, "python3", "-m", "appliance", "run")
    assert "nothing to do" in plain.stdout
    in_appliance(appliance, "python3", "-m", "appliance", "run", "--again")
    assert resource_counts(appliance) == before
    host_side = external_host_side(appliance)
    assert len(host_side["nat_rules"]) == 1, host_side
    assert "-s 10.20.20.0/24 -o mgmt0" in host_side["nat_rules"][0], host_side
    assert host_side == {**host_side, "bridges": ["br-external"], "forwarding": "1"}


def test_external_network_unit_restores_the_host_side(appliance):
    """What a reboot loses (bridge, NAT rule) the boot unit puts back, once."""
    rule = external_host_side(appliance)["nat_rules"][0].split()[2:]
    in_appliance(appliance, "iptables", "-t", "nat", "-D", "POSTROUTING", *rule)
    in_appliance(appliance, "ip", "addr", "flush", "dev", "br-external")
    in_appliance(appliance, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    for _ in range(2):
        in_appliance(appliance, "systemctl", "restart", "appliance-external-network")
    host_side = external_host_side(appliance)
    assert len(host_side["nat_rules"]) == 1 and host_side == {**host_side, "bridges": ["br-external"],
                                                               "forwarding": "1"}, host_side
    addresses = in_appliance(appliance, "ip", "-4", "-o", "addr", "show", "dev", "br-external").stdout
    assert "10.20.20.1/24" in addresses, addresses


@pytest.mark.parametrize("resume_from", ["databases", "identity", "image", "network"])
def test_resume_at_step_boundary_converges(appliance, resume_from):
    """A power cut just as `resume_from` started: that step and all after it run again."""
    before = resource_counts(appliance)
    data = journal(appliance)
    names = list(data["steps"])
    for name in names[names.index(resume_from):]:
        data["steps"][name]["state"] = "running" if name == resume_from else "pending"
    data["completed_at"] = None

    nspawn.exec_in(appliance, ["sh", "-c", "cat > /var/lib/appliance/firstboot.json"], stdin=json.dumps(data),
                   check=True)
    result = in_appliance(appliance, "python3", "-m", "appliance", "run")
    assert f"{resume_from}: " in result.stdout and "cloud ready" in result.stdout
    assert resource_counts(appliance) == before


@pytest.mark.parametrize("kill_in", ["identity", "image", "network"])
def test_killed_mid_step_converges(appliance, kill_in):
    """SIGKILL while `kill_in` runs; the next run finishes and nothing is duplicated."""

    before = resource_counts(appliance)
    data = journal(appliance)
    names = list(data["steps"])
    for name in names[names.index(kill_in):]:
        data["steps"][name]["state"] = "pending"
    data["completed_at"] = None
    nspawn.exec_in(appliance, ["sh", "-c", "cat > /var/lib/appliance/firstboot.json"], stdin=json.dumps(data),
                   check=True)
    # Make the image and network steps do their work for real (an upload; creating the
    # network, subnet, router and interface), so the kill lands in the middle of it.
    site = json.loads(in_appliance(appliance, "python3", "-c", SITE_NAMES).stdout)
    if kill_in == "image":
        in_appliance(appliance, "python3", "-c", DELETE_IMAGE, site["image"])
    if kill_in == "network":
        in_appliance(appliance, "python3", "-c", DELETE_NETWORK, site["network"], site["router"])
    # Start the agent in the background inside the appliance and kill it once the step runs.
    in_appliance(appliance, "sh", "-c", "setsid python3 -m appliance run > /var/log/appliance/killed-run.log 2>&1 &")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if journal(appliance)["steps"].get(kill_in, {}).get("state") == "running":
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"step {kill_in} never started")
    time.sleep(0.5)
    in_appliance(appliance, "pkill", f"-{int(signal.SIGKILL)}", "-f", "python3 -m appliance run")
    assert journal(appliance)["steps"][kill_in]["state"] == "running"
    # The run's lock died with it: status says the run died, not that it is in progress.
    deadline = time.monotonic() + 10
    while True:
        status = in_appliance(appliance, "python3", "-m", "appliance", "status", "--no-api", check=False)
        if "DIED" in status.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status.stdout.startswith(f"appliance: first boot run DIED during step {kill_in}"), status.stdout
    result = in_appliance(appliance, "python3", "-m", "appliance", "run")
    assert "cloud ready" in result.stdout
    assert resource_counts(appliance) == before


def test_second_run_is_refused_while_one_runs(appliance):
    in_appliance(appliance, "sh", "-c", "setsid python3 -m appliance run --again > /var/log/appliance/first-of-two.log 2>&1 &")
    deadline = time.monotonic() + 60
    while "running" not in {r["state"] for r in journal(appliance)["steps"].values()}:
        assert time.monotonic() < deadline, "the first run never started a step"
        time.sleep(0.2)
    second = in_appliance(appliance, "python3", "-m", "appliance", "run", "--again", check=False)
    assert second.returncode != 0
    assert "another agent run holds /run/appliance/agent.lock: pid " in second.stderr, second.stderr
    deadline = time.monotonic() + 900
    while journal(appliance).get("completed_at") is None:
        assert time.monotonic() < deadline, "the first run did not finish"
        time.sleep(2)


def test_smoke_fails_when_memcached_listens_everywhere(appliance):
    in_appliance(appliance, "sh", "-c", "sed -i 's/^-l 127.0.0.1$/-l 0.0.0.0/' /etc/memcached.conf && systemctl restart memcached")
    try:
        result = smoke(appliance, "--host-only")
        assert result.returncode != 0
        fail_lines = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
        assert any("only declared listeners" in line and "0.0.0.0:11211 (memcached) is any, wider than" in line
                   for line in fail_lines), result.stdout
    finally:
        in_appliance(appliance, "sh", "-c", "sed -i 's/^-l 0.0.0.0$/-l 127.0.0.1/' /etc/memcached.conf && systemctl restart memcached")


def test_smoke_fails_when_nova_compute_is_stopped(appliance):
    in_appliance(appliance, "systemctl", "stop", "nova-compute")
    try:
        result = smoke(appliance, "--host-only")
        assert result.returncode != 0
        fail_lines = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
        assert any("services enabled and running" in line and "nova-compute" in line for line in fail_lines), result.stdout
        assert re.search(r"^\d+ passed, [1-9]\d* failed$", result.stdout, re.M)
    finally:
        in_appliance(appliance, "systemctl", "start", "nova-compute")
