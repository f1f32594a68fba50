"""The controller's side of a join, socket aside: a request is checked before anything is
touched, the token is spent before anything is handed out, and a node gets only its own."""

from dataclasses import replace

import pytest

from appliance.cluster.bundle import parse_bundle
from appliance.cluster.ca import node_key_and_request
from appliance.cluster.errors import ClusterError
from appliance.cluster.joinservice import STATUS, Controller, JoinRequest, handle_join, parse_request
from appliance.cluster.registry import NodeRegistry
from appliance.cluster.token import JoinToken

NOW = 1_800_000_000
PEER = "10.254.0.11"
CSR = node_key_and_request("c2")[1].decode()
PEM = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
CONTROLLER = Controller(hostname="c1", management_ip="10.254.0.10", region="RegionOne",
                        keystone_url="http://c1:5000/v3", metadata_secret="Metadata-secret-0123")


class FakeCA:
    def __init__(self, registry):
        self.registry, self.signed = registry, []

    def ca_certificate_pem(self):
        return PEM

    def sign_node_request(self, csr, *, node, days):
        # Signed only once the invitation is spent.
        self.signed.append((node, days, self.registry.get(node).state))
        return PEM


class FakeIssuer:
    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def __getattr__(self, name):
        def call(*args):
            if name == self.fail:
                raise RuntimeError(f"{name} failed")
            self.calls.append((name, *args))
        return call


@pytest.fixture
def registry(tmp_path):
    return NodeRegistry(tmp_path / "cluster")


def invited(registry, name="c2"):
    _, secret = registry.invite(name, controller="c1", now=NOW, lifetime=3600)
    return JoinRequest(name=name, secret=secret, csr_pem=CSR, overlay_ip="10.254.1.11")


def join(registry, request, *, now=NOW + 10, issuer=None, ca=None):
    passwords = iter(["Rabbit-pass-0123", "Keystone-pass-0123"])
    return handle_join(request, peer=PEER, registry=registry, ca=ca or FakeCA(registry), issuer=issuer or FakeIssuer(),
                       controller=CONTROLLER, now=now, new_password=lambda: next(passwords))


def test_a_join_spends_the_token_then_hands_out_the_nodes_own(registry):
    request, ca, issuer = invited(registry), FakeCA(registry), FakeIssuer()
    bundle = join(registry, request, issuer=issuer, ca=ca)
    assert ca.signed == [("c2", 825, "joining")]
    assert issuer.calls == [("create_rabbitmq_user", "node-c2", "Rabbit-pass-0123", "c2"),
                            ("create_keystone_user", "node-c2", "Keystone-pass-0123"),
                            ("allow_node", "c2", PEER, "10.254.1.11")]
    token = JoinToken(name="c2", host="10.254.0.10", port=9777, expires=NOW + 3600, ca_sha256="0" * 64)
    assert parse_bundle(bundle.to_json(), token) == bundle
    assert (bundle.rabbitmq_user, bundle.keystone_user, bundle.metadata_secret) == ("node-c2", "node-c2",
                                                                                  "Metadata-secret-0123")
    node = registry.get("c2")
    assert (node.state, node.address) == ("joining", PEER)


# One row per step of the cloud side a join fails at: (label, failing call, the calls that
# follow it: the undo of what was made before, newest first).
HALF_JOINS = [
    ("the RabbitMQ user: nothing to undo", "create_rabbitmq_user", []),
    ("the Keystone user: the RabbitMQ user goes", "create_keystone_user", [("delete_rabbitmq_user", "node-c2")]),
    ("the allow-list: both users go", "allow_node", [("delete_keystone_user", "node-c2"),
                                                     ("delete_rabbitmq_user", "node-c2")]),
]


@pytest.mark.parametrize("label,fail,undone", HALF_JOINS, ids=[r[0] for r in HALF_JOINS])
def test_a_join_that_fails_half_way_leaves_no_user_behind(registry, label, fail, undone):
    issuer = FakeIssuer(fail=fail)
    with pytest.raises(RuntimeError, match=f"{fail} failed"):
        join(registry, invited(registry), issuer=issuer)
    made = ["create_rabbitmq_user", "create_keystone_user", "allow_node"]
    assert [c[0] for c in issuer.calls] == made[:made.index(fail)] + [c[0] for c in undone]
    assert issuer.calls[made.index(fail):] == undone


def test_a_failure_after_the_redeem_leaves_the_token_spent(registry):
    request = invited(registry)
    with pytest.raises(RuntimeError, match="create_keystone_user failed"):
        join(registry, request, issuer=FakeIssuer(fail="create_keystone_user"))
    with pytest.raises(ClusterError) as caught:
        join(registry, request)
    assert caught.value.kind == "used"


# One row per refusal of a well-formed request: nothing is signed or created for any.
REFUSED = [
    ("unknown node", lambda r: JoinRequest("c9", "A" * 43, node_key_and_request("c9")[1].decode(), "10.254.1.11"),
     NOW, "unknown"),
    ("wrong secret", lambda r: JoinRequest("c2", "A" * 43, CSR, "10.254.1.11") if invited(r) else None, NOW, "mismatch"),
    ("expired", lambda r: invited(r), NOW + 3600, "expired"),
    # The certificate request is checked before the token is spent: a bad one leaves it pending.
    ("a request for another node", lambda r: replace(invited(r), csr_pem=node_key_and_request("c3")[1].decode()),
     NOW, "subject"),
    ("a request that does not parse", lambda r: replace(invited(r), csr_pem=CSR.replace("MI", "AA", 1)), NOW, "csr"),
]


@pytest.mark.parametrize("label,make,now,kind", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_joins_touch_nothing(registry, label, make, now, kind):
    request, ca, issuer = make(registry), FakeCA(registry), FakeIssuer()
    with pytest.raises(ClusterError) as caught:
        join(registry, request, now=now, ca=ca, issuer=issuer)
    assert caught.value.kind == kind and kind in STATUS
    assert ca.signed == [] and issuer.calls == []
    if kind in ("subject", "csr"):
        assert registry.get("c2").state == "invited"


def test_the_request_round_trips_and_hides_its_secret(registry):
    request = invited(registry)
    assert parse_request(request.to_json()) == request
    assert request.secret not in repr(request)


GOOD = {"name": "c2", "secret": "A" * 43, "csr_pem": CSR, "overlay_ip": "10.254.1.11"}
MALFORMED = [
    ("not JSON", "nope", "malformed", "not JSON"),
    ("extra field", {**GOOD, "role": "controller"}, "malformed", "expected exactly the fields"),
    ("missing field", {k: v for k, v in GOOD.items() if k != "csr_pem"}, "malformed", "expected exactly the fields"),
    ("number", {**GOOD, "overlay_ip": 7}, "malformed", "every field is text"),
    ("bad name", {**GOOD, "name": "C2"}, "name", "node name 'C2' is not valid"),
    ("bad secret", {**GOOD, "secret": "short"}, "malformed", "not a token's secret"),
    ("a certificate, not a request", {**GOOD, "csr_pem": PEM.decode()}, "malformed", "not one PEM certificate request"),
    ("overlay loopback", {**GOOD, "overlay_ip": "127.0.0.1"}, "malformed", "not a unicast address"),
    ("overlay not IPv4", {**GOOD, "overlay_ip": "fe80::1"}, "malformed", "not an IPv4 address"),
    ("too large", "x" * 20000, "malformed", "at most 16384 characters"),
]


@pytest.mark.parametrize("label,data,kind,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests(label, data, kind, message):
    import json

    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(ClusterError) as caught:
        parse_request(text)
    assert caught.value.kind == kind and message in str(caught.value)
    assert kind in STATUS and "A" * 43 not in str(caught.value)
