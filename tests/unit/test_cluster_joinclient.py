"""The node's side of a join against the real join service on 127.0.0.1: it pins the CA by the
token's digest before a byte of HTTP leaves, trusts that CA alone afterwards, and turns each
refusal of the controller into its one line."""

import dataclasses
import socket
import stat

import pytest
from cryptography import x509

from appliance.cluster import joinclient
from appliance.cluster.ca import node_key_and_request
from appliance.cluster.errors import ClusterError
from appliance.cluster.joinservice import JoinRequest
from appliance.cluster.node import NodeFiles
from appliance.errors import ApplianceError

from . import joinharness
from .joinharness import HOST

OVERLAY = "10.254.1.11"


@pytest.fixture
def service(tmp_path):
    running = joinharness.start(tmp_path / "controller")
    yield running
    running.stop()


@pytest.fixture
def files(tmp_path):
    return NodeFiles(config_dir=tmp_path / "node" / "etc")


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_good_join_returns_the_bundle_and_keeps_it(service, files):
    token = service.invite()
    bundle = joinclient.join_controller(token, files=files, overlay_ip=OVERLAY)
    assert (bundle.node, bundle.controller_ip, bundle.rabbitmq_user) == ("c2", HOST, "node-c2")
    assert bundle.rabbitmq_password == joinharness.PASSWORDS[0]
    assert (mode(files.key), mode(files.credentials), mode(files.certificate)) == (0o600, 0o600, 0o644)
    cert = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=c2"
    assert files.ca.read_bytes() == service.ca.ca_certificate_pem()
    assert service.registry.get("c2").state == "joining"
    assert ("allow_node", "c2", HOST, OVERLAY) in service.issuer.calls
    # Two connections: the pinning handshake sent nothing, the second the one request.
    received = service.received(2)
    assert len(received) == 2 and received[0] == b"" and received[1].startswith(b"POST /join HTTP/1.1")


@pytest.mark.parametrize("pin", ["0" * 64, "other CA"], ids=["another digest", "another controller's CA"])
def test_a_wrong_fingerprint_is_refused_before_anything_is_sent(service, files, tmp_path, pin):
    if pin == "other CA":
        pin = joinharness.make_ca(tmp_path / "elsewhere")[1].ca_sha256()
    token = service.invite(pin=pin)
    with pytest.raises(ClusterError) as caught:
        joinclient.join_controller(token, files=files, overlay_ip=OVERLAY)
    line = str(caught.value)
    assert caught.value.kind == "fingerprint" and "\n" not in line
    assert f"presented CA SHA-256 {service.ca.ca_sha256()[:16]}..., the token pins {pin[:16]}..." in line
    assert "not the controller that issued the token" in line and token.secret not in line
    # The service saw one connection (the handshake) and not one byte after it; the node
    # made no key, and the invitation is as it was.
    assert service.received(1) == [bytearray()]
    assert not files.key.exists() and service.registry.get("c2").state == "invited"


def test_a_server_certificate_for_another_address_is_refused_before_the_secret(tmp_path, files):
    # The CA is the pinned one, but the service's certificate names another address: the
    # verified connection fails in its handshake, so the POST never leaves.
    service = joinharness.start(tmp_path / "controller", server_address="10.254.0.10")
    try:
        token = service.invite()
        with pytest.raises(ApplianceError, match="presented a certificate the pinned CA does not vouch for at this "
                                                 "address") as caught:
            joinclient.join_controller(token, files=files, overlay_ip=OVERLAY)
        assert token.secret not in str(caught.value)
        assert service.received(1) == [bytearray()] and service.registry.get("c2").state == "invited"
    finally:
        service.stop()


def _spent(service):
    token = service.invite()
    joinclient.redeem(token, _request(token), joinclient.pinned_ca(token))
    return token, _request(token)


def _request(token, **changes):
    csr = node_key_and_request(changes.pop("csr_name", token.name))[1].decode()
    return dataclasses.replace(JoinRequest(name=token.name, secret=token.secret, csr_pem=csr, overlay_ip=OVERLAY),
                               **changes)


# (label, (service) -> (token, request), kind, what the one line says): a row per refusal.
REFUSED = [
    ("expired", lambda s: (t := s.invite(ago=7200), _request(t)), "expired", "the invitation of node 'c2' expired at"),
    ("reused", _spent, "used", "the join token for node 'c2' was already used"),
    ("wrong secret", lambda s: (t := s.invite(), _request(t, secret="A" * 43)), "mismatch",
     "is not the one of its pending invitation"),
    ("wrong name", lambda s: (t := s.invite(), _request(t, csr_name="c3")), "subject",
     "it names 'CN=c3'; a node's request names exactly CN=c2"),
    ("unknown name", lambda s: (t := s.invite(), _request(t, name="c3", csr_name="c3")), "unknown",
     "no node 'c3' is invited on this controller"),
]


@pytest.mark.parametrize("label,prepare,kind,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_refusals_come_back_as_their_one_line(service, label, prepare, kind, message):
    token, request = prepare(service)
    with pytest.raises(ClusterError) as caught:
        joinclient.redeem(token, request, joinclient.pinned_ca(token))
    line = str(caught.value)
    assert caught.value.kind == kind and line.startswith("the controller refused the join: ")
    assert message in line and "\n" not in line and token.secret not in line


def test_refusals_leave_the_secret_out_of_the_log(service, caplog, capfd):
    secrets = []
    with caplog.at_level("DEBUG"):
        for _label, prepare, _kind, _message in REFUSED:
            service.registry.path.unlink(missing_ok=True)  # each row from a controller without nodes
            token, request = prepare(service)
            secrets.append(token.secret)
            with pytest.raises(ClusterError):
                joinclient.redeem(token, request, joinclient.pinned_ca(token))
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "refused (expired)" in logged and "refused (subject)" in logged and "node c2 joined" in logged
    assert not [secret for secret in secrets if secret in logged]


def test_no_service_is_one_line(files):
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    token = joinharness.JoinToken(name="c2", host=HOST, port=port, expires=2_000_000_000, ca_sha256="0" * 64,
                                  secret="A" * 43)
    with pytest.raises(ApplianceError, match=f"cannot reach the join service at {HOST}:{port}: Connection refused"):
        joinclient.join_controller(token, files=files, overlay_ip=OVERLAY)
    assert not files.key.exists()


def test_an_answer_for_another_key_is_refused(service):
    token = service.invite()
    bundle = joinclient.redeem(token, _request(token), joinclient.pinned_ca(token))
    other_key = node_key_and_request("c2")[0]
    with pytest.raises(ClusterError, match="its certificate is not for the key this node made") as caught:
        joinclient.check_issued(bundle, token, other_key)
    assert caught.value.kind == "malformed"
    with pytest.raises(ClusterError) as caught:
        joinclient.check_issued(bundle, dataclasses.replace(token, ca_sha256="0" * 64), other_key)
    assert caught.value.kind == "fingerprint"
