"""A node's own configuration (appliance/cluster/nodeconf.py): read back from what the join
wrote, its chassis settings for ovn-controller, and the controller ports it dials held to the
profile's declarations."""

import pytest

from appliance.cluster import nodeconf
from appliance.cluster.bundle import NodeBundle
from appliance.cluster.node import NodeFiles, write_bundle
from appliance.cluster.nodeconf import NodeConfig, chassis_settings, chassis_ssl
from appliance.errors import ApplianceError
from appliance.render import HostFacts
from pipeline.profiles import load_profile

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
BUNDLE = NodeBundle(node="c2", controller="c1", controller_ip="10.254.0.10", region="RegionOne",
                    keystone_url="http://c1:5000/v3", rabbitmq_user="node-c2", rabbitmq_password="Rabbit-pass-0123",
                    keystone_user="node-c2", keystone_password="Keystone-pass-0123",
                    metadata_secret="Metadata-secret-0123", ca_pem=PEM, certificate_pem=PEM)


@pytest.fixture
def files(tmp_path):
    return NodeFiles(config_dir=tmp_path / "etc", agent_dir=tmp_path / "neutron" / "tls")


def test_what_the_join_wrote_reads_back_as_the_bundle_says(files):
    write_bundle(files, BUNDLE)
    node = NodeConfig.load(files)
    assert node == NodeConfig.from_bundle(BUNDLE, files)
    assert (node.key_file, node.certificate_file, node.ca_file) == (str(files.key), str(files.certificate),
                                                                   str(files.ca))
    assert (node.agent_key_file, node.agent_certificate_file, node.agent_ca_file) == (
        str(files.agent_key), str(files.agent_certificate), str(files.agent_ca))
    assert node.transport_url == "rabbit://node-c2:Rabbit-pass-0123@10.254.0.10:5672/"
    assert node.southbound == "ssl:10.254.0.10:6642"
    for secret in NodeBundle.SECRETS:
        assert getattr(BUNDLE, secret) not in repr(node)


# One row per kind of node.yaml the node refuses: (label, text or None for no file, problem).
BAD_FILES = [
    ("missing", None, "a node has it once it joined"),
    ("not YAML", "a: [\n", "not YAML"),
    ("not a mapping", "- c2\n", "expected exactly the fields"),
    ("a field more", "extra", "expected exactly the fields"),
    ("a field less", "less", "expected exactly the fields"),
    ("not text", "number", "every field but version is text"),
]


@pytest.mark.parametrize("label,text,problem", BAD_FILES, ids=[r[0] for r in BAD_FILES])
def test_a_damaged_node_file_is_refused_naming_it_never_a_value(files, label, text, problem):
    if text is not None:
        write_bundle(files, BUNDLE)
        good = files.credentials.read_text()
        text = {"extra": good + "database_url: x\n",
                "less": "".join(line for line in good.splitlines(True) if not line.startswith("region")),
                "number": good.replace("region: RegionOne", "region: 7")}.get(text, text)
        files.credentials.write_text(text)
    with pytest.raises(ApplianceError, match=problem) as caught:
        NodeConfig.load(files)
    assert str(files.credentials) in str(caught.value) and "pass-0123" not in str(caught.value)


# One row per external_id of the node's chassis (ovn-controller(8)): (label, facts, key, value);
# a value None: the key is not set at all.
FACTS = HostFacts(hostname="c2", management_ip="10.254.0.11", overlay_ip="10.254.1.11", datapath="netdev")
CHASSIS = [
    ("named after the node", FACTS, "system-id", "c2"),
    ("its hostname is Nova's host", FACTS, "hostname", "c2"),
    ("southbound over TLS at the controller", FACTS, "ovn-remote", "ssl:10.254.0.10:6642"),
    ("geneve", FACTS, "ovn-encap-type", "geneve"),
    ("tunnel from the overlay address", FACTS, "ovn-encap-ip", "10.254.1.11"),
    ("the integration bridge", FACTS, "ovn-bridge", "br-int"),
    ("the datapath first boot chose", FACTS, "ovn-bridge-datapath-type", "netdev"),
    ("no datapath before it chose", HostFacts("c2", "10.254.0.11", "10.254.0.11"), "ovn-bridge-datapath-type", None),
    ("not a gateway", FACTS, "ovn-cms-options", None),
    ("no external bridge", FACTS, "ovn-bridge-mappings", None),
]


@pytest.mark.parametrize("label,facts,key,value", CHASSIS, ids=[r[0] for r in CHASSIS])
def test_chassis_settings(label, facts, key, value):
    settings = chassis_settings(NodeConfig.from_bundle(BUNDLE), overlay_ip=facts.overlay_ip, datapath=facts.datapath)
    assert settings.get(key) == value


def test_chassis_tls_is_the_nodes_key_certificate_and_ca():
    assert chassis_ssl(NodeConfig.from_bundle(BUNDLE)) == ("/etc/appliance/tls/node.key",
                                                           "/etc/appliance/tls/node.crt", "/etc/appliance/tls/ca.crt")


def test_the_ports_a_node_dials_are_the_controllers_declared_ones():
    epoxy = load_profile("trixie-epoxy")
    declared = {(svc.name, p.port): p for svc in epoxy.services for p in svc.ports}
    assert declared[("rabbitmq", nodeconf.AMQP_PORT)].nodes == "tcp"
    assert declared[("ovn", nodeconf.SOUTHBOUND_PORT)].nodes == "tls"
    assert declared[("nova", nodeconf.METADATA_PORT)].nodes == "tcp"
