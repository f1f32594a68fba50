"""A second machine joins the appliance's cloud as a compute node (issue 28), on two
containers of the harness that share one management segment (nothing reaches the host's
network):

1. the controller boots (first boot awaited), ``appliance add-node`` invites the node and
   writes its token (0600) inside the controller;
2. the node boots from the same image with that token in its site config (``join:``): its
   first boot redeems it at the controller's join service and runs the compute role's steps;
3. the controller lists both hypervisors up, and ``appliance status`` on each names its role;
4. ``appliance selftest nodes`` on the controller: the scheduler spreads one server per host,
   the one on the node is reached over the tenant network (its user-data ran) and reaches the
   controller's, and the floating IP checks pass on it (SSH from the controller host, 50 MB
   each way, outbound NAT, a security group closing SSH);
5. the escape probes hold on the node: in the instance, and on the node for its init; every
   server action works or is refused at once there (the lifecycle suite, its server on the
   node while the controller's nova-compute is disabled, reached through the controller's);
6. the node powers off: the controller marks its nova-compute down while the controller's
   instance stays ACTIVE and answers; the node boots again and its instance comes back ACTIVE;
7. ``appliance remove-node`` is refused while the instance lives there; ``--force`` deletes
   it and leaves no compute service, hypervisor, resource provider, chassis or user behind,
   and AMQP back on loopback alone.

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

from pipeline.harness import local, uplink

from .conftest import booted, in_appliance

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(PROFILE != "trixie-epoxy", reason="scale-out needs ML2/OVN")]

# The controller's harness name: its own, so the suite's shared appliance (the profile's name)
# keeps running beside it.
CONTROLLER = "scale-out"
NODE = 1
NODE_NAME = "node1"
TOKEN_FILE = "/root/node1.token"

# What the scripts below share: the admin, the tenant network's namespace, a server's address.
PRELUDE = r"""
import json, subprocess, sys
from appliance.agent.context import AgentContext, Paths
from appliance.selftest import escape_probes, guest
ctx = AgentContext.load(Paths())
admin = guest.connect("admin")
network = admin.network.find_network(ctx.site.network.name, ignore_missing=False)
ns = ctx.profile.network.namespace(network.id)
def address(server):
    return [a["addr"] for a in server.addresses[network.name] if a.get("version") == 4][0]
"""

# Run on the controller with the instance's id and the id of an instance on the controller
# (argv[1], argv[2]): the escape probes inside the first, over SSH through the second (OVN's
# metadata namespace reaches only its own chassis' instances); prints {"results": {probe:
# [passed, detail]}, "marker", "instance_name"}.
GUEST_PROBES = PRELUDE + r"""
server, via = admin.compute.get_server(sys.argv[1]), admin.compute.get_server(sys.argv[2])
results, marker = escape_probes.guest_side_probes(ns, address(server), via=address(via))
print(json.dumps({"results": results, "marker": marker, "instance_name": server.instance_name}))
"""

# Run on the node with the instance's libvirt name and the marker path: the host side.
HOST_PROBES = r"""
import json, sys
from appliance.selftest import escape_probes
print(json.dumps(escape_probes.host_side_probes(escape_probes.instance_init_pid(sys.argv[1]), sys.argv[2])))
"""

# Run on the controller: a server's status and whether it answers SSH (argv[1]: its id;
# argv[2], optional: through that instance on the controller); prints {"status", "answers"}.
SERVER_STATE = PRELUDE + r"""
server = admin.compute.get_server(sys.argv[1])
via = address(admin.compute.get_server(sys.argv[2])) if len(sys.argv) > 2 else None
ssh = subprocess.run(guest.ssh_cmd(guest.LOGIN_USER, address(server), "true", netns=ns, via=via), capture_output=True,
                     timeout=120)
print(json.dumps({"status": server.status, "answers": ssh.returncode == 0}))
"""


def openstack(controller, *args):
    result = in_appliance(controller, "bash", "-lc", "source /root/rc.admin && openstack " + " ".join(args) +
                          " -f json", timeout=120)
    return json.loads(result.stdout)


def compute_services(controller) -> list[dict]:
    return openstack(controller, "compute service list --service nova-compute")


def nova_compute_of(controller, host) -> str | None:
    """The state Nova reports for ``host``'s nova-compute ("up", "down"), None: not listed."""
    return next((s["State"] for s in compute_services(controller) if s["Host"].split(".")[0] == host), None)


def server_state(controller, server_id, *via) -> dict:
    return json.loads(in_appliance(controller, "python3", "-c", SERVER_STATE, server_id, *via,
                                   timeout=180).stdout.strip().splitlines()[-1])


def wait_for(what, probe, timeout, interval=10):
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def rows_of(result) -> list[dict]:
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        print(f"{'ok  ' if row['passed'] else 'FAIL'} {row['name']:60} {row['seconds']:7.1f} s  {row['detail']}")
    return rows


def test_a_second_machine_joins_serves_instances_survives_a_power_off_and_leaves(appliance_image, tmp_path):
    with booted(name=CONTROLLER, logs="pytest-e2e-scale-out", overlay=True) as controller:
        controller_host = in_appliance(controller, "hostname", "-s").stdout.strip()
        in_appliance(controller, "python3", "-m", "appliance", "add-node", NODE_NAME, "--out", TOKEN_FILE)
        token = in_appliance(controller, "cat", TOKEN_FILE).stdout.strip()
        site = tmp_path / "node.yaml"
        fd = os.open(site, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"join: {{token: '{token}'}}\n")
        del token
        node_name = local.node_name(PROFILE, NODE, CONTROLLER)
        with booted(name=node_name, logs="pytest-e2e-scale-out-node", node=NODE, controller=CONTROLLER,
                    site=site) as node:
            assert (node.management_ip, node.overlay_ip, node.segment) == ("10.254.0.11", "10.254.0.201", controller.name)
            wait_for(f"{NODE_NAME}'s nova-compute up in the controller's service list",
                     lambda: nova_compute_of(controller, NODE_NAME) == "up", timeout=900)
            wait_for(f"{NODE_NAME} recorded joined", lambda: json.loads(in_appliance(
                controller, "cat", "/var/lib/appliance/cluster/nodes.json").stdout)["nodes"][NODE_NAME]["state"]
                == "joined", timeout=120)

            # 3. Both hypervisors up; each machine says its role.
            hypervisors = {h["Hypervisor Hostname"].split(".")[0]: h["State"]
                           for h in openstack(controller, "hypervisor list")}
            assert hypervisors == {controller_host: "up", NODE_NAME: "up"}, hypervisors
            said = in_appliance(controller, "python3", "-m", "appliance", "status").stdout
            assert f"role: controller; compute nodes: {NODE_NAME} (joined)" in said, said
            said = in_appliance(node, "python3", "-m", "appliance", "status").stdout
            assert said.startswith("appliance: cloud ready"), said
            assert f"role: compute node {NODE_NAME} of controller {controller_host} (10.254.0.10)" in said, said
            assert f"resource provider {NODE_NAME}" in said and " listed in Placement" in said, said

            # 4. Instances spread over both hosts, the node's reached every way.
            result = in_appliance(controller, "python3", "-m", "appliance", "selftest", "nodes", "--keep",
                                  "--outbound-probe", uplink.INTERNET_PROBE, timeout=1800, check=False)
            rows = rows_of(result)
            assert rows and rows[-1]["name"] == "servers", result.stderr[-800:]
            failed = [f"{r['name']}: {r['detail']}" for r in rows if not r["passed"]]
            assert not failed and result.returncode == 0, failed
            hosts = json.loads(rows[-1]["detail"])["hosts"]
            on_node = next(i for i, h in hosts.items() if h == NODE_NAME)
            on_controller = next(i for i, h in hosts.items() if h == controller_host)

            # 5. The escape probes on the node: in the instance, then on the node for its init.
            inside = json.loads(in_appliance(controller, "python3", "-c", GUEST_PROBES, on_node, on_controller,
                                             timeout=300).stdout.strip().splitlines()[-1])
            outside = json.loads(in_appliance(node, "python3", "-c", HOST_PROBES, inside["instance_name"],
                                              inside["marker"] or "", timeout=120).stdout.strip().splitlines()[-1])
            probes = {**inside["results"], **outside}
            print(json.dumps(probes, indent=1))
            assert len(outside) >= 2 and all(ok for ok, _ in probes.values()), probes

            # 5b. Every server action works or is refused at once on the node too: with the
            # controller's nova-compute disabled the lifecycle suite's server lands there, and
            # the suite reaches it through the controller's instance.
            admin_sh = "source /root/rc.admin && openstack compute service set {} " + controller_host + " nova-compute"
            in_appliance(controller, "bash", "-lc", admin_sh.format("--disable --disable-reason e2e-lifecycle-on-node"))
            try:
                result = in_appliance(controller, "python3", "-m", "appliance", "selftest", "lifecycle",
                                      "--via", on_controller, timeout=1200, check=False)
            finally:
                in_appliance(controller, "bash", "-lc", admin_sh.format("--enable"))
            rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
            for row in rows:
                print(f"{'ok  ' if row['passed'] else 'FAIL'} {row['outcome'] or '-':8} {row['name']:32} {row['detail']}")
            assert rows and rows[0]["detail"].endswith(f" on {NODE_NAME}"), rows[:1]
            assert rows[-1]["name"].endswith("nothing left"), result.stdout + result.stderr[-800:]
            assert not [r["name"] for r in rows if not r["passed"]], result.stdout[-2000:]
            works = {r["name"] for r in rows if r["outcome"] == "works"}
            assert {"stop", "start", "soft reboot", "hard reboot", "rebuild"} <= works, works
            # Its disk and loop device are gone from the node, where it ran.
            lifecycle_server = rows[0]["detail"].split()[0]
            assert in_appliance(node, "test", "-e", f"/var/lib/nova/instances/{lifecycle_server}",
                                check=False).returncode != 0
            assert lifecycle_server not in in_appliance(node, "losetup", "-l", "-n").stdout

            # 6. The node powers off and comes back.
            def while_off():
                wait_for(f"{NODE_NAME}'s nova-compute down", lambda: nova_compute_of(controller, NODE_NAME) == "down",
                         timeout=300)
                assert server_state(controller, on_controller) == {"status": "ACTIVE", "answers": True}

            node, _ = local.restart(PROFILE, name=node_name, while_off=while_off)
            wait_for(f"{NODE_NAME}'s nova-compute up again", lambda: nova_compute_of(controller, NODE_NAME) == "up",
                     timeout=600)
            wait_for("the node's instance ACTIVE and answering again", lambda: server_state(
                controller, on_node, on_controller) == {"status": "ACTIVE", "answers": True}, timeout=600)

            # 7. Removal: refused while the instance lives there, then forced.
            refused = in_appliance(controller, "python3", "-m", "appliance", "remove-node", NODE_NAME, check=False)
            assert refused.returncode != 0 and "still hosts 1 instance(s)" in refused.stderr, refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            removed = in_appliance(controller, "python3", "-m", "appliance", "remove-node", NODE_NAME, "--force",
                                   timeout=600)
            assert f"node {NODE_NAME} removed" in removed.stdout, removed.stdout
            assert nova_compute_of(controller, NODE_NAME) is None
            assert NODE_NAME not in {h["Hypervisor Hostname"].split(".")[0]
                                     for h in openstack(controller, "hypervisor list")}
            providers = {p["name"].split(".")[0] for p in openstack(controller, "resource provider list")}
            assert providers == {controller_host}, providers
            chassis = in_appliance(controller, "ovn-sbctl", "--bare", "--columns=name", "list", "Chassis").stdout.split()
            assert NODE_NAME not in chassis and chassis, chassis
            users = {u["Name"] for u in openstack(controller, "user list")}
            assert f"node-{NODE_NAME}" not in users, users
            rabbit = in_appliance(controller, "rabbitmqctl", "--quiet", "list_users").stdout
            assert f"node-{NODE_NAME}" not in rabbit, rabbit
            amqp = in_appliance(controller, "ss", "-Hltn", "sport = :5672").stdout
            assert "10.254.0.10:5672" not in amqp and "127.0.0.1:5672" in amqp, amqp
            in_appliance(controller, "bash", "-lc", f"source /root/rc.admin && openstack server delete --wait {on_controller}",
                         timeout=300)
