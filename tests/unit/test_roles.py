"""Roles are profile data: the compute role of trixie-epoxy is a subset of the controller's
services that holds none of the controller's secrets (its nova.conf and metadata agent ini
come from node templates and the node's join bundle), and bad role or port data is refused
naming the field."""

import copy

import pytest

from appliance.cluster.node import NodeFiles
from appliance.cluster.nodeconf import NodeConfig, preview, tls_files
from appliance.cluster.token import JoinToken, new_secret
from appliance.credentials import placeholder_secrets
from appliance.errors import ApplianceError, ConfigError
from appliance.profile_delta import resolve_profile_file
from appliance.profiles import parse_profile
from appliance.render import HostFacts, render_files, render_site
from appliance.roles import profile_for_role
from appliance.site import SiteConfig
from pipeline.profiles import load_profile, profile_path

from .ini import parse_ini

# What the controller's answer to c2's join holds (cluster/bundle.py), its secrets unlike
# any of the controller's own: whatever a node file holds must come from here.
NODE = NodeConfig(node="c2", controller="c1", controller_ip="10.254.0.10", region="RegionOne",
                  keystone_url="http://c1:5000/v3", rabbitmq_user="node-c2", rabbitmq_password="Rabbit-pass-0123",
                  keystone_user="node-c2", keystone_password="Keystone-pass-0123",
                  metadata_secret="Metadata-secret-0123", **tls_files(NodeFiles()))
NODE_FACTS = HostFacts(hostname="c2", management_ip="10.254.0.11", overlay_ip="10.254.0.11")


@pytest.fixture(scope="module")
def epoxy():
    return load_profile("trixie-epoxy")


@pytest.fixture(scope="module")
def compute(epoxy):
    return profile_for_role(epoxy, "compute")


def test_the_controller_is_the_whole_profile(epoxy):
    assert epoxy.role_names() == ["controller", "compute"]
    assert profile_for_role(epoxy, "controller") is epoxy
    assert epoxy.steps is None  # the controller's steps: the agent's whole list


def test_a_roles_profile_carries_its_first_boot_steps(compute):
    assert compute.steps == ("host", "bundle", "node-configs", "instance-ids", "node-chassis", "node-services",
                             "node-up")


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


@pytest.fixture(scope="module")
def node_files(epoxy, compute):
    """The compute role's files for NODE, rendered with every controller secret as a
    placeholder (a controller's secrets file as the node must never see it)."""
    return {f.spec.path: f for f in render_files(compute, SiteConfig(), NODE_FACTS, placeholder_secrets(epoxy),
                                                 node=NODE)}


def test_compute_files_hold_none_of_the_controllers_secrets(epoxy, node_files):
    """No compute file names a controller secret: no admin rc, no database URL, no service
    password; its nova.conf and metadata agent ini are the node's own. (The metadata secret
    is one per cloud: the node's copy comes from its bundle, never from the controller's
    secrets file, which is what this proves for it.)"""
    assert {"/etc/nova/nova.conf", "/etc/nova/nova-compute.conf",
            "/etc/neutron/neutron_ovn_metadata_agent.ini"} <= set(node_files)
    assert "/root/rc.admin" not in node_files and "/etc/neutron/neutron.conf" not in node_files
    for item in node_files.values():
        for name, value in placeholder_secrets(epoxy).items():
            assert value not in item.content, f"{item.spec.path} holds {name}"
        for name in ("nova", "neutron", "placement", "glance", "openstack", "admin"):
            assert f"username = {name}\n" not in item.content, f"{item.spec.path} authenticates as {name}"


def _option(text: str, section: str, key: str):
    return parse_ini(text, merge_duplicates=False).get(section, {}).get(key)


NOVA, AGENT = "/etc/nova/nova.conf", "/etc/neutron/neutron_ovn_metadata_agent.ini"
AUTH = "http://c1:5000/v3"
# One row per option a node file must hold, and what: (label, file, section, key, value).
NODE_OPTIONS = [
    ("rpc as the node's user", NOVA, "DEFAULT", "transport_url", "rabbit://node-c2:Rabbit-pass-0123@10.254.0.10:5672/"),
    ("libvirt LXC as on the controller", NOVA, "libvirt", "virt_type", "lxc"),
    ("the same instance id map", NOVA, "libvirt", "uid_maps", "0:100000:65536"),
    ("the node's address", NOVA, "DEFAULT", "my_ip", "10.254.0.11"),
    ("images from the controller's glance", NOVA, "glance", "api_servers", "http://10.254.0.10:9292"),
    ("authtoken user", NOVA, "keystone_authtoken", "username", "node-c2"),
    ("authtoken password", NOVA, "keystone_authtoken", "password", "Keystone-pass-0123"),
    ("authtoken keystone", NOVA, "keystone_authtoken", "www_authenticate_uri", AUTH),
    ("placement user", NOVA, "placement", "username", "node-c2"),
    ("placement keystone", NOVA, "placement", "auth_url", AUTH),
    ("placement region", NOVA, "placement", "region_name", "RegionOne"),
    ("neutron user", NOVA, "neutron", "username", "node-c2"),
    ("neutron password", NOVA, "neutron", "password", "Keystone-pass-0123"),
    ("service token user", NOVA, "service_user", "username", "node-c2"),
    ("service token sent", NOVA, "service_user", "send_service_user_token", "true"),
    ("metadata API on the controller", AGENT, "DEFAULT", "nova_metadata_host", "10.254.0.10"),
    ("metadata API port", AGENT, "DEFAULT", "nova_metadata_port", "8775"),
    ("the cloud's metadata secret", AGENT, "DEFAULT", "metadata_proxy_shared_secret", "Metadata-secret-0123"),
    ("southbound over TLS", AGENT, "ovn", "ovn_sb_connection", "ssl:10.254.0.10:6642"),
    ("southbound key, the agent's copy", AGENT, "ovn", "ovn_sb_private_key", "/etc/neutron/tls/node.key"),
    ("southbound certificate, the agent's copy", AGENT, "ovn", "ovn_sb_certificate", "/etc/neutron/tls/node.crt"),
    ("southbound CA, the agent's copy", AGENT, "ovn", "ovn_sb_ca_cert", "/etc/neutron/tls/ca.crt"),
    ("the node's own OVSDB", AGENT, "ovs", "ovsdb_connection", "tcp:127.0.0.1:6640"),
]


@pytest.mark.parametrize("label,path,section,key,value", NODE_OPTIONS, ids=[r[0] for r in NODE_OPTIONS])
def test_node_files_hold_the_nodes_configuration(node_files, label, path, section, key, value):
    assert _option(node_files[path].content, section, key) == value


# One row per thing a node file must not have: (label, file, section, key or None for the
# whole section).
NODE_ABSENT = [
    ("no nova database", NOVA, "database", None),
    ("no nova API database", NOVA, "api_database", None),
    ("no metadata secret for nova-compute", NOVA, "neutron", "metadata_proxy_shared_secret"),
    ("no memcached of the controller's", NOVA, "keystone_authtoken", "memcached_servers"),
    ("no API workers", NOVA, "DEFAULT", "enabled_apis"),
]


@pytest.mark.parametrize("label,path,section,key", NODE_ABSENT, ids=[r[0] for r in NODE_ABSENT])
def test_node_files_leave_out_what_only_the_controller_has(node_files, label, path, section, key):
    sections = parse_ini(node_files[path].content, merge_duplicates=False)
    if key is None:
        assert section not in sections
    else:
        assert key not in sections.get(section, {})


def test_a_nodes_hosts_file_names_itself_and_the_controller(node_files):
    lines = [line.split() for line in node_files["/etc/hosts"].content.splitlines()
             if line.strip() and not line.startswith("#")]
    assert ["10.254.0.11", "c2"] in lines and ["10.254.0.10", "c1"] in lines
    assert ["127.0.0.1", "localhost"] in lines


def test_node_files_keep_their_secrets_private(node_files):
    for path in (NOVA, AGENT):
        assert node_files[path].spec.holds_secrets, path


def test_a_node_file_without_a_bundle_says_so(epoxy, compute):
    with pytest.raises(ApplianceError, match="rendered from its join bundle"):
        render_files(compute, SiteConfig(), NODE_FACTS, placeholder_secrets(epoxy))


def test_a_node_renders_without_any_controller_secret(compute, node_files):
    """A node has no secrets file of the controller's: its files render from the bundle
    alone, as they do with the controller's secrets at hand."""
    alone = {f.spec.path: f.content for f in render_files(compute, SiteConfig(), NODE_FACTS, {}, node=NODE)}
    assert alone == {path: f.content for path, f in node_files.items()}


def test_the_controllers_rpc_url_without_its_secrets_says_so(epoxy):
    import jinja2

    from appliance.render import template_context

    with pytest.raises(jinja2.UndefinedError, match="a compute node has no controller secrets"):
        str(template_context(epoxy, SiteConfig(), NODE_FACTS, {}, NODE)["transport_url"])


def test_invoke_render_of_a_joining_site_previews_the_nodes_files(tmp_path):
    token = JoinToken(name="c2", host="10.254.0.10", port=9777, expires=2_000_000_000, ca_sha256="a" * 64,
                      secret=new_secret())
    site = tmp_path / "site.yaml"
    site.write_text(f"join: {{token: '{token.text()}'}}\n")
    render_site(load_profile("trixie-epoxy"), site, tmp_path / "out")
    nova = (tmp_path / "out/etc/nova/nova.conf").read_text()
    assert _option(nova, "DEFAULT", "transport_url") == \
        "rabbit://node-c2:PLACEHOLDER-node-rabbitmq_password@10.254.0.10:5672/"
    assert preview("c2", "10.254.0.10").key_file == str(NodeFiles().key)
    assert not (tmp_path / "out/root/rc.admin").exists()


def test_the_nodes_reach_amqp_the_metadata_api_and_the_southbound_database(epoxy):
    assert [(svc, p.port, p.bind, p.nodes) for svc, p in epoxy.node_ports()] == [
        ("rabbitmq", 5672, "loopback", "tcp"), ("nova", 8775, "loopback", "tcp"), ("ovn", 6642, "loopback", "tls")]


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
    ("unknown file", lambda d: _role(d)[1]["files"].append("/etc/nova/other.conf"), "roles.compute.services[1].files[6]",
     "service nova has no /etc/nova/other.conf"),
    ("unknown port", lambda d: _role(d)[2]["ports"].append(6650), "roles.compute.services[2].ports[1]",
     "service ovn has no 6650"),
    ("template for a file not kept", lambda d: _role(d)[1].update(templates={"/etc/nova/policy.yaml": "x.j2"}),
     "roles.compute.services[1].templates", "/etc/nova/policy.yaml is not a file this role writes"),
    ("unknown role key", lambda d: d["roles"]["compute"].update(units=[]), "roles.compute.units", "unknown key"),
    ("no steps", lambda d: d["roles"]["compute"].pop("steps"), "roles.compute.steps",
     "expected the first-boot steps this role runs"),
    ("step twice", lambda d: d["roles"]["compute"]["steps"].append("host"), "roles.compute.steps[7]",
     "step 'host' is named twice"),
    ("a profile's own steps", lambda d: d.update(steps=["host"]), "steps",
     "a profile's own steps are the controller's"),
    ("nodes on a management port", lambda d: _service(d, "dashboard")["ports"][1].update(nodes="tcp"),
     "services[11].ports[1].nodes", "only a loopback port opens to the nodes (this one is bound to management"),
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


def test_each_chassis_keeps_its_name_across_restarts(epoxy, node_files):
    """Debian's ovsdb-server unit sets external_ids:system-id from system-id.conf at every
    start; the file names the chassis as the chassis step does (a node's certificate, CN =
    its name, must match it under OVN's RBAC)."""
    from appliance.cluster.nodeconf import chassis_settings

    path = "/etc/openvswitch/system-id.conf"
    assert node_files[path].content == "c2\n"
    assert chassis_settings(NODE, overlay_ip="10.254.0.11", datapath="netdev")["system-id"] == "c2"
    site = SiteConfig(hostname="c1")
    controller = {f.spec.path: f for f in render_files(epoxy, site, HostFacts.from_site(site),
                                                       placeholder_secrets(epoxy))}
    assert controller[path].content == "c1\n"
