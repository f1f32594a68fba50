"""What a node receives, exactly: the bundle's fields are the documented list, the node refuses
anything more or anything not its own, and its RabbitMQ user reaches its own queues only."""

import json

import pytest

from appliance.cluster import rabbitmq
from appliance.cluster.bundle import FIELDS, NodeBundle, parse_bundle
from appliance.cluster.errors import ClusterError
from appliance.cluster.token import JoinToken, new_secret

TOKEN = JoinToken(name="c2", host="10.254.0.10", port=9777, expires=2_000_000_000, ca_sha256="c" * 64,
                  secret=new_secret())
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
SECRETS = {"rabbitmq_password": "Rabbit-pass-0123", "keystone_password": "Keystone-pass-0123",
           "metadata_secret": "Metadata-secret-0123"}


def good(**changes):
    data = {"version": 1, "node": "c2", "controller": "controller", "controller_ip": "10.254.0.10",
            "region": "RegionOne", "keystone_url": "http://controller:5000/v3", "rabbitmq_user": "node-c2",
            "keystone_user": "node-c2", "ca_pem": PEM, "certificate_pem": PEM, **SECRETS}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def test_the_bundle_is_the_documented_list():
    assert set(FIELDS) == {"version", "node", "controller", "controller_ip", "region", "keystone_url",
                           "rabbitmq_user", "rabbitmq_password", "keystone_user", "keystone_password",
                           "metadata_secret", "ca_pem", "certificate_pem"}
    assert set(NodeBundle.SECRETS) == set(SECRETS)


def test_a_good_bundle_round_trips_and_hides_its_secrets():
    bundle = parse_bundle(json.dumps(good()), TOKEN)
    assert parse_bundle(bundle.to_json(), TOKEN) == bundle
    for secret in SECRETS.values():
        assert secret not in repr(bundle)


# One row per kind of bad answer: (label, the answer, what the one line says).
BAD = [
    ("not JSON", "<html>", "not JSON"),
    ("a list", "[]", "not a JSON object"),
    ("a database URL", json.dumps(good(database_url="mysql+pymysql://nova:x@c1/nova")),
     "unexpected field 'database_url' (a node takes only its own credentials"),
    ("the admin password", json.dumps(good(admin_password="x" * 12)), "unexpected field 'admin_password'"),
    ("missing field", json.dumps(good(metadata_secret=...)), "field 'metadata_secret' is missing"),
    ("other version", json.dumps(good(version=2)), "version 2, expected 1"),
    ("another node's", json.dumps(good(node="c3")), "it is for node 'c3', the token for 'c2'"),
    ("the openstack RabbitMQ user", json.dumps(good(rabbitmq_user="openstack")),
     "field 'rabbitmq_user' is 'openstack'; a node gets only its own user 'node-c2'"),
    ("the nova Keystone user", json.dumps(good(keystone_user="nova")), "field 'keystone_user' is 'nova'"),
    ("another controller", json.dumps(good(controller_ip="10.254.0.99")), "is not the token's 10.254.0.10"),
    ("bad Keystone URL", json.dumps(good(keystone_url="http://c1:5000/v2.0")), "not a Keystone v3 URL"),
    ("weak secret", json.dumps(good(keystone_password="short")), "field 'keystone_password' is not 8 to 128"),
    ("secret with a quote", json.dumps(good(rabbitmq_password="abc'defgh12")), "field 'rabbitmq_password'"),
    ("not a certificate", json.dumps(good(certificate_pem="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")),
     "field 'certificate_pem' is not one PEM certificate"),
    ("a number for text", json.dumps(good(region=1)), "field 'region' is not text"),
    ("too large", "x" * 70000, "expected at most 65536 characters"),
]


@pytest.mark.parametrize("label,text,message", BAD, ids=[b[0] for b in BAD])
def test_the_node_refuses_more_than_its_own(label, text, message):
    with pytest.raises(ClusterError) as caught:
        parse_bundle(text, TOKEN)
    assert caught.value.kind == "malformed" and message in str(caught.value)
    for secret in SECRETS.values():
        assert secret not in str(caught.value)


PERMS = rabbitmq.node_permissions("c2")
ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("kind,name,allowed", [
    ("configure", "nova", True), ("configure", "compute", True), ("configure", "compute.c2", True),
    ("configure", f"compute_fanout_{ID}", True), ("configure", f"reply_{ID}", True),
    ("configure", "compute.c3", False), ("configure", "compute.c22", False), ("configure", "conductor", False),
    ("configure", "scheduler", False), ("configure", "q-plugin", False), ("configure", "neutron", False),
    ("read", "compute.c3", False), ("read", "conductor", False), ("read", "notifications.info", False),
    ("write", "compute.c2", True), ("write", "amq.direct", False), ("write", "amq.default", True),
    ("configure", "amq.default", False), ("read", "amq.default", False),
    ("configure", "scheduler_fanout", True), ("write", "scheduler_fanout", True),
    ("read", "scheduler_fanout", False), ("configure", "scheduler_fanout_x", False),
])
def test_a_nodes_rabbitmq_user_reaches_its_own_names_only(kind, name, allowed):
    assert rabbitmq.allows(PERMS["permissions"][kind], name) is allowed


@pytest.mark.parametrize("kind,key,allowed", [
    ("write", "conductor", True), ("write", "compute.c1", False), ("write", "scheduler", False),
    ("write", "compute", False), ("read", "compute.c2", True), ("read", "compute", True),
    ("read", "compute.c1", False), ("read", "conductor", False),
])
def test_a_nodes_routing_keys_on_novas_exchange(kind, key, allowed):
    assert rabbitmq.allows(PERMS["topic_permissions"][kind], key) is allowed


def test_the_entries_are_a_definitions_files():
    assert PERMS["permissions"]["user"] == PERMS["topic_permissions"]["user"] == "node-c2"
    assert PERMS["topic_permissions"]["exchange"] == "nova" and PERMS["permissions"]["vhost"] == "/"
