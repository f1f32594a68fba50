"""Roles are profile data: the compute role of trixie-epoxy is a subset of the controller's
services that holds none of the controller's secrets, and bad role or port data is refused
naming the field."""

import copy

import pytest

from appliance.credentials import placeholder_secrets
from appliance.errors import ApplianceError, ConfigError
from appliance.profile_delta import resolve_profile_file
from appliance.profiles import parse_profile
from appliance.render import HostFacts, render_files
from appliance.roles import profile_for_role
from appliance.site import SiteConfig
from pipeline.profiles import load_profile, profile_path


@pytest.fixture(scope="module")
def epoxy():
    return load_profile("trixie-epoxy")


@pytest.fixture(scope="module")
def compute(epoxy):
    return profile_for_role(epoxy, "compute")


def test_the_controller_is_the_whole_profile(epoxy):
    assert epoxy.role_names() == ["controller", "compute"]
    assert profile_for_role(epoxy, "controller") is epoxy


def test_compute_runs_nova_compute_a_chassis_and_the_metadata_agent(compute):
    assert [s.name for s in compute.services] == ["host", "nova", "ovn", "neutron", "zram"]
    assert {"nova-compute", "libvirtd", "ovn-controller", "ovs-vswitchd", "neutron-ovn-metadata-agent"} <= set(compute.units())
    never = {"mariadb", "rabbitmq-server", "memcached", "keystone", "glance-api", "placement-api", "nova-api",
             "nova-conductor", "nova-scheduler", "neutron-api", "ovn-northd", "ovn-ovsdb-server-sb", "ovn-central"}
    assert not never & set(compute.units())
    assert compute.rpc_gate.units == ("nova-compute",) and compute.tenant_quota is None


def test_compute_owns_no_database_user_or_endpoint(compute):
    for svc in compute.services:
        assert not (svc.databases or svc.db_user or svc.service_user or svc.endpoint), svc.name


def test_compute_listens_only_on_ssh_and_loopback_ovsdb(compute):
    assert {(p.port, p.bind) for svc in compute.services for p in svc.ports} == {(22, "any"), (6640, "loopback")}


def test_compute_files_hold_none_of_the_controllers_secrets(epoxy, compute):
    """Rendered with every controller secret as a placeholder, no compute file names one:
    no admin rc, no database URL, no service password."""
    secrets = placeholder_secrets(epoxy)
    files = render_files(compute, SiteConfig(), HostFacts.from_site(SiteConfig(), hostname="c2"), secrets)
    paths = {f.spec.path for f in files}
    assert "/etc/nova/nova-compute.conf" in paths and "/root/rc.admin" not in paths
    for item in files:
        for name, value in secrets.items():
            assert value not in item.content, f"{item.spec.path} holds {name}"


def test_the_nodes_reach_the_metadata_api_and_the_southbound_database(epoxy):
    assert [(svc, p.port, p.bind, p.nodes) for svc, p in epoxy.node_ports()] == [
        ("nova", 8775, "loopback", "tcp"), ("ovn", 6642, "loopback", "tls")]


def test_a_profile_without_roles_cannot_scale_out():
    zed = load_profile("bookworm-zed")
    assert zed.role_names() == ["controller"] and zed.node_ports() == []
    with pytest.raises(ApplianceError, match="profile bookworm-zed has no role 'compute' \\(roles: controller\\)"):
        profile_for_role(zed, "compute")


def _epoxy_data():
    return resolve_profile_file(profile_path("trixie-epoxy"))


def _role(data):
    return data["roles"]["compute"]["services"]


def _service(data, name):
    return next(s for s in data["services"] if s["name"] == name)


# One row per kind of bad role or port data: (label, change to the resolved mapping, field, problem).
BAD = [
    ("controller declared", lambda d: d["roles"].update(controller=d["roles"]["compute"]), "roles.controller",
     "the controller's role is the whole profile"),
    ("role name", lambda d: d["roles"].update({"Compute-2": d["roles"]["compute"]}), "roles.Compute-2",
     "expected a lower-case word"),
    ("unknown service", lambda d: _role(d).append({"name": "cinder"}), "roles.compute.services[5].name",
     "no service 'cinder'"),
    ("service twice", lambda d: _role(d).append({"name": "host"}), "roles.compute.services[5].name",
     "service 'host' is named twice"),
    ("unknown unit", lambda d: _role(d)[1]["units"].append("nova-api-x"), "roles.compute.services[1].units[6]",
     "service nova has no nova-api-x"),
    ("unknown file", lambda d: _role(d)[1]["files"].append("/etc/nova/other.conf"), "roles.compute.services[1].files[5]",
     "service nova has no /etc/nova/other.conf"),
    ("unknown port", lambda d: _role(d)[2]["ports"].append(6650), "roles.compute.services[2].ports[1]",
     "service ovn has no 6650"),
    ("template for a file not kept", lambda d: _role(d)[1].update(templates={"/etc/nova/nova.conf": "x.j2"}),
     "roles.compute.services[1].templates", "/etc/nova/nova.conf is not a file this role writes"),
    ("unknown role key", lambda d: d["roles"]["compute"].update(units=[]), "roles.compute.units", "unknown key"),
    ("nodes on a management port", lambda d: _service(d, "rabbitmq")["ports"][0].update(nodes="tcp"),
     "services[2].ports[0].nodes", "only a loopback port opens to the nodes (this one is bound to management"),
    ("nodes transport", lambda d: _service(d, "ovn")["ports"][2].update(nodes="ssl"), "services[8].ports[2].nodes",
     "expected tcp, tls or nothing"),
]


@pytest.mark.parametrize("label,change,field,problem", BAD, ids=[b[0] for b in BAD])
def test_bad_role_data_names_the_field(label, change, field, problem):
    data = copy.deepcopy(_epoxy_data())
    change(data)
    with pytest.raises(ConfigError) as caught:
        parse_profile(data, "t.yaml")
    assert caught.value.field == field, str(caught.value)
    assert problem in caught.value.problem
