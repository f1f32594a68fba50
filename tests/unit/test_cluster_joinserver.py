"""The join service's socket on 127.0.0.1: one POST answered with the bundle or one line of a
refusal's kind, everything else refused by status, the secret never in its log, and the
service gone once no invitation is left. Clients here are plain http.client over TLS that
trusts the test's CA (the node's pinning client is test_cluster_joinclient.py)."""

import http.client
import json
import socket
import ssl
import stat
import threading
import time

import pytest
from cryptography import x509

from appliance import tls
from appliance.cluster import joinserver
from appliance.cluster.ca import node_key_and_request
from appliance.cluster.joinservice import STATUS, JoinRequest

from . import joinharness
from .joinharness import HOST


@pytest.fixture
def service(tmp_path):
    running = joinharness.start(tmp_path)
    yield running
    running.stop()


def post(service, body: bytes | None, *, path="/join", method="POST", headers=None):
    """(status, JSON answer) of one request over TLS verified by the test's CA."""
    context = ssl.create_default_context(cafile=str(service.paths.ca_cert))
    connection = http.client.HTTPSConnection(HOST, service.port, context=context, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null") if response.status != 501 else None
    finally:
        connection.close()


def request_for(token, *, name=None, csr_name=None, secret=None) -> bytes:
    csr = node_key_and_request(csr_name or name or token.name)[1].decode()
    return JoinRequest(name=name or token.name, secret=secret or token.secret, csr_pem=csr,
                       overlay_ip="10.254.1.11").to_json().encode()


def test_a_good_join_answers_the_bundle(service):
    token = service.invite()
    status, answer = post(service, request_for(token))
    assert status == 200 and answer["node"] == "c2" and answer["rabbitmq_user"] == "node-c2"
    assert answer["ca_pem"].encode() == service.ca.ca_certificate_pem()
    cert = x509.load_pem_x509_certificate(answer["certificate_pem"].encode())
    assert cert.subject.rfc4514_string() == "CN=c2"
    node = service.registry.get("c2")
    assert (node.state, node.address) == ("joining", HOST)


# (label, what to send, status, kind): the refusals of joinservice.STATUS and of HTTP itself.
REFUSED = [
    ("not JSON", lambda t: b"{", 400, "malformed"),
    ("another name's request", lambda t: request_for(t, csr_name="c3"), 403, "subject"),
    ("unknown node", lambda t: request_for(t, name="c9"), 403, "unknown"),
    ("wrong secret", lambda t: request_for(t, secret="A" * 43), 403, "mismatch"),
]


@pytest.mark.parametrize("label,body,status,kind", REFUSED, ids=[r[0] for r in REFUSED])
def test_refusals_answer_their_status_and_one_line(service, label, body, status, kind):
    token = service.invite()
    got, answer = post(service, body(token))
    assert (got, answer["kind"]) == (status, kind) and STATUS.get(kind, status) == status
    assert "\n" not in answer["message"] and token.secret not in answer["message"]
    assert service.registry.get("c2").state == "invited" and service.issuer.calls == []


@pytest.mark.parametrize("headers,status", [({}, 411), ({"Content-Length": "20000"}, 413),
                                            ({"Content-Length": "-1"}, 413)], ids=["no length", "too long", "negative"])
def test_the_length_is_checked_before_the_body_is_read(service, headers, status):
    context = ssl.create_default_context(cafile=str(service.paths.ca_cert))
    connection = http.client.HTTPSConnection(HOST, service.port, context=context, timeout=10)
    connection.putrequest("POST", "/join")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()  # and no body: the answer comes without waiting for one
    response = connection.getresponse()
    assert response.status == status and json.loads(response.read())["kind"] == "malformed"
    connection.close()


def test_only_post_to_join_is_served(service):
    assert post(service, b"{}", path="/")[0] == 404
    assert post(service, None, method="GET")[0] == 501


def test_a_failure_after_the_redeem_is_a_500_that_says_how_to_start_over(tmp_path, caplog):
    service = joinharness.start(tmp_path, issuer=joinharness.FakeIssuer(fail="create_keystone_user"))
    try:
        token = service.invite()
        with caplog.at_level("DEBUG"):
            status, answer = post(service, request_for(token))
        assert status == 500 and answer["kind"] == "internal"
        assert "appliance remove-node c2, then appliance add-node c2" in answer["message"]
        assert "create_keystone_user failed" in caplog.text and token.secret not in caplog.text
        assert service.registry.get("c2").state == "joining"
    finally:
        service.stop()


def test_a_client_that_never_speaks_holds_nothing_up(service, monkeypatch):
    monkeypatch.setattr(joinserver, "READ_TIMEOUT", 0.3)
    token = service.invite()
    with socket.create_connection((HOST, service.port)):  # connects, never shakes hands
        started = time.monotonic()
        status, _ = post(service, request_for(token))
    assert status == 200 and time.monotonic() - started < 5


def test_serve_runs_while_an_invitation_is_pending(tmp_path):
    service = joinharness.start(tmp_path)
    service.stop()  # the harness's serve_forever; here the production loop instead
    paths = service.paths
    server = joinserver.JoinServer((HOST, 0), context=joinserver.server_context(*joinserver.server_files(paths)),
                                   answer=service.server.answer)
    service.server = server
    token = service.invite()
    loop = threading.Thread(target=joinserver.serve, args=(server,),
                            kwargs={"keep_going": lambda: service.registry.has_pending(int(time.time())), "poll": 0.05})
    loop.start()
    assert post(service, request_for(token))[0] == 200
    loop.join(timeout=5)
    assert not loop.is_alive()  # the last invitation redeemed: the service is gone
    with pytest.raises(OSError):
        socket.create_connection((HOST, service.port), timeout=1).close()


def test_the_server_certificate_is_issued_once_and_again_when_it_no_longer_fits(tmp_path):
    paths, ca = joinharness.make_ca(tmp_path)
    key, chain = joinserver.server_files(paths)
    assert "for c1 and 10.254.0.10 (was: missing)" in joinserver.ensure_server_certificate(ca, paths, "c1", "10.254.0.10")
    assert joinserver.ensure_server_certificate(ca, paths, "c1", "10.254.0.10") is None
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(chain.stat().st_mode) == 0o644
    certs = x509.load_pem_x509_certificates(chain.read_bytes())
    assert [c.subject.rfc4514_string() for c in certs] == ["CN=c1", "CN=c1 appliance CA,O=OpenStack LXC appliance"]
    assert "(was: names" in joinserver.ensure_server_certificate(ca, paths, "c1", "10.254.0.11")
    assert tls.server_cert_problem(x509.load_pem_x509_certificate(chain.read_bytes()), certs[1], "c1",
                                   "10.254.0.11", tls.datetime.datetime.now(tls.datetime.timezone.utc)) is None


def test_neither_the_secret_nor_a_password_reaches_the_log(service, caplog, capfd):
    """Every outcome once, each with the log at its most verbose: the secret, the bundle's
    passwords and the node's certificate request stay out of the log and of stderr."""
    tokens = [service.invite(name) for name in ("c2", "c3", "c4")]
    with caplog.at_level("DEBUG"):
        for body in (request_for(tokens[0]), request_for(tokens[0]), request_for(tokens[1], secret=tokens[2].secret),
                     request_for(tokens[1], csr_name="c9"), b"{" + tokens[2].secret.encode()):
            post(service, body)
        post(service, None, method="GET", path="/" + tokens[2].secret)
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "node c2 joined" in logged and "node c2 refused (used)" in logged and "refused (mismatch)" in logged
    for secret in [t.secret for t in tokens] + list(joinharness.PASSWORDS) + [joinharness.METADATA_SECRET]:
        assert secret not in logged
    assert "CERTIFICATE REQUEST" not in logged
