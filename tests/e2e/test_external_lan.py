"""Provider mode: the external network is a LAN the harness makes (a namespace of its own on
a second interface of the appliance); a client on that LAN logs in to an instance's
floating IP. Its own appliance, booted beside the session's."""

import os
import re
import subprocess
import tempfile
import time

import pytest

from pipeline.harness import uplink

from .conftest import booted, in_appliance

pytestmark = pytest.mark.e2e

NAME = "e2e-lan"

# Run on the appliance as the lxc user: a server with a floating IP from `external`.
SERVER_WITH_FIP = r"""
import json
from appliance.selftest import guest
from appliance.agent.context import AgentContext, Paths
ctx = AgentContext.load(Paths())
site = ctx.site
c = guest.connect("lxc")
for old in c.compute.servers(name="lan-smoke"):
    c.compute.delete_server(old)
    c.compute.wait_for_delete(old, wait=120)
server = guest.boot_server(c, site, "lan-smoke")
port = next(iter(c.network.ports(device_id=server.id)))
fip = c.network.create_ip(floating_network_id=c.network.find_network(site.external.name).id, port_id=port.id)
print(json.dumps({"fip": fip.floating_ip_address, "user": ctx.profile.settings.get("guest_user", "root")}))
"""

# A running instance at power-off keeps the appliance's loop devices busy: clean up first.
DELETE_SERVER = r"""
from appliance.selftest import guest
c = guest.connect("lxc")
for server in c.compute.servers(name="lan-smoke"):
    for fip in c.network.ips(project_id=c.current_project_id):
        c.network.delete_ip(fip)
    c.compute.delete_server(server)
    c.compute.wait_for_delete(server, wait=180)
"""


@pytest.fixture(scope="module")
def lan_appliance(appliance_image):
    with booted(NAME, logs="pytest-e2e-lan", lan=True, site_yaml=uplink.lan_site()) as state:
        yield state


def test_lan_client_logs_in_to_a_floating_ip(lan_appliance):
    import json

    made = json.loads(in_appliance(lan_appliance, "python3", "-c", SERVER_WITH_FIP).stdout.strip().splitlines()[-1])
    fip, user = made["fip"], made["user"]
    start, end = (int(a.rsplit(".", 1)[1]) for a in uplink.LAN_FLOATING_RANGE)
    assert fip.startswith("198.51.100.") and start <= int(fip.rsplit(".", 1)[1]) <= end, fip
    key = in_appliance(lan_appliance, "cat", "/etc/appliance/lxckey").stdout
    with tempfile.NamedTemporaryFile("w", delete=False) as handle:
        handle.write(key)
    os.chmod(handle.name, 0o600)
    try:
        cmd = ["ip", "netns", "exec", uplink.lan_netns(NAME), "ssh", "-i", handle.name, "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
               "-o", "LogLevel=ERROR", f"{user}@{fip}", "hostname"]
        for _ in range(30):
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if result.returncode == 0:
                break
            time.sleep(2)
        assert result.returncode == 0, result.stderr
        assert re.match(r"^[a-z0-9-]+$", result.stdout.strip()), result.stdout
    finally:
        os.unlink(handle.name)
        in_appliance(lan_appliance, "python3", "-c", DELETE_SERVER)
    # The LAN is the external network: the appliance itself has no address on it.
    lan_addresses = in_appliance(lan_appliance, "ip", "-4", "-o", "addr", "show", "dev", uplink.LAN_INTERFACE).stdout
    assert lan_addresses.strip() == "", lan_addresses
