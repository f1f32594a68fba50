"""Python programs the restart tests run on the appliance itself (as root, with the `lxc`
cloud of its clouds.yaml and the keypair's key): one instance with a floating IP and a file
written in it before a reboot, and the same file read back after it. Shared by the nspawn
restart (test_restart.py) and the VM reboot (test_vm.py).

Each prints one JSON line: SERVER_WITH_DATA ``{"id", "fip", "data"}``; SERVER_BACK (argv:
server id, floating IP, seconds to wait for ACTIVE) ``{"active_s", "ssh_s", "data"}``."""

# Run on the appliance as the lxc user: a server with a floating IP and a file written in it.
SERVER_WITH_DATA = r"""
import json
from appliance.selftest import guest
from appliance.agent.context import AgentContext, Paths
site = AgentContext.load(Paths()).site
c = guest.connect("lxc")
server = guest.boot_server(c, site, "restart-keeper")
port = next(iter(c.network.ports(device_id=server.id)))
fip = c.network.create_ip(floating_network_id=c.network.find_network(site.external.name).id, port_id=port.id)
write = "echo written-before-restart-$(cat /proc/sys/kernel/random/uuid) > data.txt && sync && cat data.txt"
cmd = guest.ssh_cmd(guest.LOGIN_USER, fip.floating_ip_address, write)
result = guest.wait_ssh(c, server, cmd, timeout=180, what="SSH to the floating IP")
print(json.dumps({"id": server.id, "fip": fip.floating_ip_address, "data": result.stdout.strip()}))
"""

# After the restart: the server's status until ACTIVE (seconds), then its data file over SSH.
SERVER_BACK = r"""
import json, sys, time
from appliance.selftest import guest
server_id, address = sys.argv[1], sys.argv[2]
c = guest.connect("lxc")
start = time.monotonic()
status = guest.wait("server ACTIVE again", lambda: (s := c.compute.get_server(server_id).status) == "ACTIVE" and s,
                    timeout=int(sys.argv[3]), interval=2)
active = time.monotonic() - start
cmd = guest.ssh_cmd(guest.LOGIN_USER, address, "cat data.txt")
# The guest's DHCP client backs off (up to ~64 s between tries) while Neutron's DHCP agent
# resynchronises after the reboot.
result = guest.wait_ssh(c, server_id, cmd, timeout=300, what="SSH to the floating IP")
print(json.dumps({"active_s": round(active, 1), "ssh_s": round(time.monotonic() - start, 1),
                  "data": result.stdout.strip()}))
"""

