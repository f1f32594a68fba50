"""A second machine joins the appliance's cloud as a compute node (issue 28), on two
containers of the harness that share one management segment (nothing reaches the host's
network):

1. the controller boots (first boot awaited), ``appliance add-node`` invites the node and
   writes its token (0600) inside the controller;
2. the node boots from the same image with that token in its site config (``join:``): its
   first boot redeems it at the controller's join service and runs the compute role's steps;
3. the controller's ``openstack compute service list`` shows the node's nova-compute up
   (the join service maps its host into the cell and records it joined);
4. an instance forced onto the node (``--availability-zone nova:<node>``, as the admin) gets
   a floating IP, and the controller reaches it over SSH through the Geneve tunnel;
5. ``appliance remove-node --force`` takes the node out again.

Both containers have a second link for Geneve (the harness's overlay segment): on the
userspace datapath the endpoint moves onto an Open vSwitch bridge (netbackend/tunnel.py).
The token never leaves the two containers' files and this test's temporary directory
(0600), and never appears on a command line or in the output.
"""

import json
import os
import time

import pytest
from project import PROFILE

from pipeline.harness import local

from .conftest import booted, in_appliance

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(PROFILE != "trixie-epoxy", reason="scale-out needs ML2/OVN")]

NODE = 1
NODE_NAME = "node1"
TOKEN_FILE = "/root/node1.token"

# Run on the controller: boot a server on NODE (argv[1]) as the admin, give it a floating IP
# and SSH to it from the controller; prints where it ran and what it answered.
ON_THE_NODE = r"""
import json, sys, time
from appliance.agent.context import AgentContext
from appliance.agent.context import Paths
from appliance.agent.steps_cloud import public_key
from appliance.selftest import guest
node = sys.argv[1]
ctx = AgentContext.load(Paths())
site = ctx.site
admin = guest.connect("admin")
network = admin.network.find_network(site.network.name, ignore_missing=False)
group = admin.network.create_security_group(name="scale-out", description="e2e: SSH to an instance on a node")
keypair = admin.compute.create_keypair(name="scale-out", public_key=public_key(ctx))
server = fip = None
try:
    for rule in ({"protocol": "icmp"}, {"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}):
        admin.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                                 ethertype="IPv4", remote_ip_prefix="0.0.0.0/0", **rule)
    started = time.monotonic()
    server = admin.compute.create_server(
        name=f"on-{node}", flavor_id=admin.compute.find_flavor(site.flavors[0].name).id,
        image_id=admin.image.find_image(site.image_name).id, networks=[{"uuid": network.id}],
        key_name=keypair.name, security_groups=[{"name": group.name}], availability_zone=f"nova:{node}")
    server = admin.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=2,
                                           wait=600 * guest.patience())
    active = time.monotonic() - started
    port = next(iter(admin.network.ports(device_id=server.id)))
    external = admin.network.find_network(site.external.name, ignore_missing=False)
    fip = admin.network.create_ip(floating_network_id=external.id, port_id=port.id)
    address = fip.floating_ip_address
    cmd = guest.ssh_cmd(guest.LOGIN_USER, address, "hostname")
    result = guest.wait_ssh(admin, server, cmd, timeout=300, what="SSH to the floating IP of an instance on the node")
    print(json.dumps({"host": server.compute_host or server.hypervisor_hostname, "active_s": round(active, 1),
                      "ssh_s": round(time.monotonic() - started, 1), "hostname": result.stdout.strip(),
                      "address": address}))
finally:
    if fip is not None:
        admin.network.delete_ip(fip)
    if server is not None:
        admin.compute.delete_server(server)
        admin.compute.wait_for_delete(server, wait=300 * guest.patience())
    admin.compute.delete_keypair(keypair)
    admin.network.delete_security_group(group)
"""


def compute_services(controller) -> list[dict]:
    result = in_appliance(controller, "bash", "-lc", "source /root/rc.admin && openstack compute service list "
                          "--service nova-compute -f json", timeout=120)
    return json.loads(result.stdout)


def wait_for(what, probe, timeout, interval=10):
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def test_a_second_machine_joins_runs_an_instance_and_leaves(appliance_image, tmp_path):
    with booted(logs="pytest-e2e-scale-out", overlay=True) as controller:
        in_appliance(controller, "python3", "-m", "appliance", "add-node", NODE_NAME, "--out", TOKEN_FILE)
        token = in_appliance(controller, "cat", TOKEN_FILE).stdout.strip()
        site = tmp_path / "node.yaml"
        fd = os.open(site, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"join: {{token: '{token}'}}\n")
        del token
        with booted(name=local.node_name(PROFILE, NODE), logs="pytest-e2e-scale-out-node", node=NODE,
                    site=site) as node:
            assert (node.management_ip, node.overlay_ip, node.segment) == ("10.254.0.11", "10.254.0.201", controller.name)

            def node_up():
                return [s for s in compute_services(controller) if s["Host"] == NODE_NAME and s["State"] == "up"]

            wait_for(f"{NODE_NAME}'s nova-compute up in the controller's service list", node_up, timeout=900)
            wait_for(f"{NODE_NAME} recorded joined", lambda: json.loads(in_appliance(
                controller, "cat", "/var/lib/appliance/cluster/nodes.json").stdout)["nodes"][NODE_NAME]["state"]
                == "joined", timeout=120)
            result = in_appliance(controller, "python3", "-c", ON_THE_NODE, NODE_NAME, timeout=1800, check=False)
            # Whole output on failure: SSH's failure carries the instance's console.
            print(result.stdout, result.stderr[-3000:], sep="\n")
            assert result.returncode == 0, result.stderr[-800:]
            ran = json.loads(result.stdout.strip().splitlines()[-1])
            assert ran["host"] == NODE_NAME, ran
            assert ran["hostname"], ran
            removed = in_appliance(controller, "python3", "-m", "appliance", "remove-node", NODE_NAME, "--force")
            assert f"node {NODE_NAME} removed" in removed.stdout
            assert not [s for s in compute_services(controller) if s["Host"] == NODE_NAME]
