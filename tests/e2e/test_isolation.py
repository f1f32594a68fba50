"""Tenant isolation on a real appliance: every server action works or is refused at once,
the escape probes catch an instance whose root is the appliance's root, quotas hold."""

import json

import pytest
from project import PROFILE

from pipeline.harness import nspawn
from pipeline.profiles import load_profile

from .conftest import in_appliance

pytestmark = pytest.mark.e2e


# The smoke's probes against an instance created while nova-compute runs without
# uid_maps/gid_maps. Run on the appliance; prints {probe: [passed, detail]}.
PROBES_UNMAPPED = r"""
import json
from appliance.selftest import escape_probes, guest
from appliance.agent.context import AgentContext, Paths
context = AgentContext.load(Paths())
site = context.site
lxc, admin = guest.connect("lxc"), guest.connect("admin")
network = lxc.network.find_network(site.network.name)
server = guest.boot_server(lxc, site, "lxc_unmapped")
try:
    ip = [a["addr"] for a in server.addresses[network.name]][0]
    ns = context.profile.network.namespace(network.id)
    guest.wait_ssh(lxc, server, guest.ssh_argv(ns, ip, "true"), timeout=120)
    results = escape_probes.run_escape_probes(ns, ip, admin.compute.get_server(server.id).instance_name,
                                   emit_result=lambda *a: None)
    print(json.dumps(results))
finally:
    lxc.compute.delete_server(server)
    lxc.compute.wait_for_delete(server, wait=180)
"""

QUOTA_EXCEEDED = r"""
import json, openstack
from appliance.agent.context import AgentContext, Paths
context = AgentContext.load(Paths())
site = context.site
lxc, admin = openstack.connect(cloud="lxc"), openstack.connect(cloud="admin")
limit = admin.get_compute_quotas("lxc").instances
network = lxc.network.find_network(site.network.name)
response = lxc.compute.post("/servers", raise_exc=False, json={"server": {
    "name": "lxc_over_quota", "flavorRef": lxc.compute.find_flavor(site.flavors[0].name).id,
    "imageRef": lxc.image.find_image(site.image_name).id, "networks": [{"uuid": network.id}],
    "min_count": limit + 1, "max_count": limit + 1}})
print(json.dumps({"limit": limit, "status": response.status_code, "body": response.text[:400],
                  "left": len(list(lxc.compute.servers(name="lxc_over_quota")))}))
"""


def run_on_appliance(state, source, timeout=1200):
    result = nspawn.exec_in(state, ["python3", "-"], stdin=source, timeout=timeout)
    assert result.returncode in (0, 1), f"exit {result.returncode}: {result.stderr[-800:]}"
    return result


def test_every_server_action_works_or_is_refused_at_once(appliance):
    result = nspawn.exec_in(appliance, ["python3", "-m", "appliance", "selftest", "lifecycle"], timeout=1200)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        print(f"{'ok  ' if row['passed'] else 'FAIL'} {row['outcome'] or '-':8} {row['name']:32} "
              f"{row['seconds']:6.1f} s  {row['detail']}")
    assert rows and rows[-1]["name"].endswith("nothing left"), result.stdout + result.stderr[-800:]
    failed = [f"{r['name']}: {r['detail']}" for r in rows if not r["passed"]]
    assert not failed, failed
    refused = {r["name"] for r in rows if r["outcome"] == "refused"}
    assert {"suspend", "rescue", "shelve", "snapshot (createImage)", "resize", "VNC console"} <= refused
    works = {r["name"] for r in rows if r["outcome"] == "works"}
    assert {"stop", "start", "soft reboot", "hard reboot", "pause", "unpause", "rebuild", "lock"} <= works


def test_escape_probes_fail_when_instances_are_not_user_namespaced(appliance):
    """Each probe must be able to fail: without uid_maps/gid_maps an instance's root is the
    appliance's root, and the probes say so."""
    conf = "/etc/nova/nova.conf"
    in_appliance(appliance, "cp", "-p", conf, f"{conf}.mapped")
    try:
        in_appliance(appliance, "sed", "-i", "/^uid_maps\\|^gid_maps/d", conf)
        in_appliance(appliance, "systemctl", "restart", "nova-compute")
        in_appliance(appliance, "sh", "-c", "until openstack --os-cloud admin compute service list --service "
                     "nova-compute -f value -c State | grep -qx up; do sleep 2; done", timeout=120)
        result = run_on_appliance(appliance, PROBES_UNMAPPED)
    finally:
        in_appliance(appliance, "mv", f"{conf}.mapped", conf)
        in_appliance(appliance, "systemctl", "restart", "nova-compute")
    results = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(results, indent=1))
    must_fail = {"uid_map", "mount", "proc_sys", "sys", "device", "file owner on the appliance",
                 "no capability in the initial user namespace"}
    assert must_fail <= set(results), results
    passed_anyway = sorted(name for name in must_fail if results[name][0])
    assert not passed_anyway, f"probes that missed an unmapped instance: {passed_anyway}"


def test_quota_is_sized_from_the_host_and_enforced(appliance):
    result = run_on_appliance(appliance, QUOTA_EXCEEDED)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    cpus = int(in_appliance(appliance, "nproc").stdout)
    assert data["limit"] == cpus * load_profile(PROFILE).tenant_quota.vcpus_per_cpu, data
    assert data["status"] == 403 and "Quota exceeded" in data["body"], data
    assert data["left"] == 0, data
