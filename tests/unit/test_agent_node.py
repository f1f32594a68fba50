"""A compute node's first-boot steps (appliance/agent/steps_node.py) over fakes: the commands
that make it a chassis and their order, which units it starts, what it refuses before the
join left it whole, the name it takes, and its wait for nova-compute to report."""

import re
from types import SimpleNamespace

import pytest

from appliance.agent import steps_node
from appliance.agent.context import Paths
from appliance.agent.steps_host import joined_name
from appliance.cluster.bundle import NodeBundle
from appliance.cluster.node import NodeFiles, write_bundle, write_key
from appliance.cluster.token import JoinToken, new_secret
from appliance.errors import ApplianceError
from appliance.render import HostFacts
from appliance.roles import profile_for_role
from appliance.site import JoinConfig, SiteConfig
from pipeline.profiles import load_profile

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
BUNDLE = NodeBundle(node="c2", controller="c1", controller_ip="10.254.0.10", region="RegionOne",
                    keystone_url="http://c1:5000/v3", rabbitmq_user="node-c2", rabbitmq_password="Rabbit-pass-0123",
                    keystone_user="node-c2", keystone_password="Keystone-pass-0123",
                    metadata_secret="Metadata-secret-0123", ca_pem=PEM, certificate_pem=PEM)
FACTS = HostFacts(hostname="c2", management_ip="10.254.0.11", overlay_ip="10.254.1.11", datapath="netdev")


@pytest.fixture(scope="module")
def compute():
    return profile_for_role(load_profile("trixie-epoxy"), "compute")


def node_ctx(tmp_path, compute, *, joined=True, site=None):
    """A node's agent context under tmp_path; ``joined``: the join wrote its bundle."""
    paths = Paths(config_dir=tmp_path / "etc", state_dir=tmp_path / "state")
    if joined:
        files = NodeFiles(config_dir=paths.config_dir)
        write_key(files, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        write_bundle(files, BUNDLE)
    return SimpleNamespace(paths=paths, profile=compute, active_profile=compute, site=site or SiteConfig(),
                           facts=FACTS)


SSL = ("/etc/appliance/tls/node.key", "/etc/appliance/tls/node.crt", "/etc/appliance/tls/ca.crt")
# One row per command that makes the node a chassis, in order: (label, argv).
CHASSIS_COMMANDS = [
    ("OVSDB's manager on loopback", ["ovs-vsctl", "--no-wait", "set-manager", "ptcp:6640:127.0.0.1"]),
    ("ovn-controller's TLS files", ["ovs-vsctl", "--no-wait", "set-ssl", *SSL]),
    ("the chassis' settings", ["ovs-vsctl", "--no-wait", "set", "open_vswitch", ".", "external_ids:system-id=c2",
                               "external_ids:hostname=c2", "external_ids:ovn-remote=ssl:10.254.0.10:6642",
                               "external_ids:ovn-encap-type=geneve", "external_ids:ovn-encap-ip=10.254.1.11",
                               "external_ids:ovn-bridge=br-int", "external_ids:ovn-bridge-datapath-type=netdev"]),
    ("nothing of a gateway's", ["ovs-vsctl", "--no-wait", "remove", "open_vswitch", ".", "external_ids",
                                "ovn-cms-options", "ovn-bridge-mappings"]),
]


def test_the_chassis_commands_and_their_order_between_the_units(tmp_path, compute):
    done = []
    steps_node.node_chassis(node_ctx(tmp_path, compute), command=lambda argv: done.append(argv),
                            start=lambda units: done.append(("start", *units)),
                            place_endpoint=lambda **kw: done.append(("endpoint", kw["overlay_ip"])))
    files = NodeFiles(config_dir=tmp_path / "etc")
    ssl = (str(files.key), str(files.certificate), str(files.ca))
    wanted = [[*argv[:3], *ssl] if argv[2] == "set-ssl" else argv for _, argv in CHASSIS_COMMANDS]
    assert done == [("start", "ovsdb-server"), *wanted,
                    ("start", "ovs-vswitchd", "openvswitch-switch", "ovs-record-hostname"),
                    ("endpoint", "10.254.1.11"), ("start", "ovn-controller", "ovn-host")]
    # No OVN central database or northd: they are the controller's.
    assert not any("ovn-northd" in item or "ovn-ovsdb-server-sb" in item for item in done)


@pytest.mark.parametrize("label,argv", CHASSIS_COMMANDS, ids=[r[0] for r in CHASSIS_COMMANDS])
def test_chassis_commands(label, argv):
    from appliance.cluster.nodeconf import NodeConfig, chassis_settings, chassis_ssl

    node = NodeConfig.from_bundle(BUNDLE)
    commands = steps_node.chassis_commands(chassis_settings(node, overlay_ip="10.254.1.11", datapath="netdev"),
                                           chassis_ssl(node))
    assert commands[[r[0] for r in CHASSIS_COMMANDS].index(label)] == argv
    assert len(commands) == len(CHASSIS_COMMANDS)


def test_the_node_starts_libvirt_nova_compute_and_the_metadata_agent_at_once(tmp_path, compute):
    started = []
    steps_node.node_services(node_ctx(tmp_path, compute), start=started.append)
    assert started == [["libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket", "libvirtd", "libvirt-guests",
                        "nova-compute", "neutron-ovn-metadata-agent"]]


# One row per piece of the join the bundle step refuses without: (label, file removed, message).
MISSING = [
    ("no join at all", "credentials", "node.yaml: No such file or directory; a node has it once it joined"),
    ("no key", "key", "node.key is missing; the join writes it (appliance join with a new token from appliance "
                      "add-node c2 on c1)"),
    ("no certificate", "certificate", "node.crt is missing"),
    ("no CA", "ca", "ca.crt is missing"),
]


@pytest.mark.parametrize("label,name,message", MISSING, ids=[r[0] for r in MISSING])
def test_the_bundle_step_refuses_a_join_left_short(tmp_path, compute, label, name, message):
    ctx = node_ctx(tmp_path, compute)
    getattr(NodeFiles(config_dir=ctx.paths.config_dir), name).unlink()
    shared = []
    with pytest.raises(ApplianceError, match=re.escape(message)):
        steps_node.join_bundle(ctx, group_of=lambda group: 1234, share=lambda *args: shared.append(args))
    assert shared == []


def test_an_unattended_first_boot_redeems_its_site_token_in_the_bundle_step(tmp_path, compute):
    ctx = node_ctx(tmp_path, compute, joined=False, site=SiteConfig(join=JoinConfig(token=TOKEN.text())))
    redeemed = []

    def redeem(ctx_, files):
        redeemed.append(files)
        write_key(files, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        write_bundle(files, BUNDLE)

    steps_node.join_bundle(ctx, group_of=lambda group: 1234, share=lambda *args: None, redeem=redeem)
    steps_node.join_bundle(ctx, group_of=lambda group: 1234, share=lambda *args: None, redeem=redeem)
    assert redeemed == [NodeFiles(config_dir=ctx.paths.config_dir)]  # once: then the bundle is there


def test_the_bundle_step_shares_the_tls_files_with_the_agents_group(tmp_path, compute):
    ctx, shared = node_ctx(tmp_path, compute), []
    steps_node.join_bundle(ctx, group_of={"neutron": 1234}.__getitem__, share=lambda *args: shared.append(args))
    assert shared == [(NodeFiles(config_dir=ctx.paths.config_dir), 1234)]


TOKEN = JoinToken(name="c3", host="10.254.0.10", port=9777, expires=4_000_000_000, ca_sha256="a" * 64,
                  secret=new_secret())
# One row per name a machine may be given: (label, joined, site hostname, site joins, name or error).
NAMES = [
    ("a controller: no join names it", False, None, False, None),
    ("a node: its join's name", True, None, False, "c2"),
    ("a site repeating it", True, "c2", False, "c2"),
    ("a site contradicting it", True, "c9", False,
     "hostname: 'c9' is not 'c2', the name this node joined its cloud with"),
    ("a site that joins, before the join: its token's name", False, None, True, "c3"),
    ("once joined, the join's name", True, None, True, "c2"),
]


@pytest.mark.parametrize("label,joined,hostname,joins,wanted", NAMES, ids=[r[0] for r in NAMES])
def test_the_name_a_join_gives(tmp_path, compute, label, joined, hostname, joins, wanted):
    site = SiteConfig(hostname=hostname, join=JoinConfig(token=TOKEN.text()) if joins else None)
    ctx = node_ctx(tmp_path, compute, joined=joined, site=site)
    if wanted is not None and " " in wanted:
        with pytest.raises(ApplianceError, match=wanted):
            joined_name(ctx)
    else:
        assert joined_name(ctx) == wanted


# One row per resource provider list: (label, names, whether node c2 reported).
PROVIDERS = [
    ("none yet", [], False),
    ("only the controller", ["c1"], False),
    ("the node", ["c1", "c2"], True),
    ("the node with a domain", ["c2.example.org"], True),
    ("a longer name", ["c22"], False),
]


@pytest.mark.parametrize("label,names,wanted", PROVIDERS, ids=[r[0] for r in PROVIDERS])
def test_reported(label, names, wanted):
    assert steps_node.reported(names, "c2") is wanted


def test_the_node_waits_for_its_provider_as_its_own_user(tmp_path, compute, monkeypatch):
    monkeypatch.setattr("appliance.agent.system.time.sleep", lambda _: None)
    answers = iter([[], ["c1"], ["c1", "c2"]])
    asked = []

    class Placement:
        def resource_providers(self):
            asked.append(1)
            return [SimpleNamespace(name=name) for name in next(answers)]

    users = []
    steps_node.node_reports_up(node_ctx(tmp_path, compute),
                               connect=lambda node: users.append(node.keystone_user) or
                               SimpleNamespace(placement=Placement()))
    assert users == ["node-c2"] and len(asked) == 3
