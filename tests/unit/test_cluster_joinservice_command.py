"""`appliance join-service` as the unit runs it, on loopback: it serves one join (the real
HTTPS server and the node's pinning client), then waits for that node's nova-compute, maps
it and records it joined, then exits. The cloud's pieces are fakes; nothing of the host is
read or written."""

import socket
import threading
import time

from appliance.cluster import commands, enrol
from appliance.cluster.node import NodeFiles
from appliance.cluster.registry import NodeRegistry
from appliance.cluster.settle import Settle
from appliance.cluster.token import JoinToken

from .joinharness import controller_paths


class FakeIssuer:
    def __init__(self):
        self.calls = []

    def ready(self):
        self.calls.append("ready")

    def __getattr__(self, name):
        return lambda *args: self.calls.append(name)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_join_service_serves_a_join_then_settles_and_exits(tmp_path, monkeypatch):
    from appliance import tls
    from appliance.cluster.ca import controller_ca, tls_paths

    paths = controller_paths(tmp_path, management_ip="127.0.0.1")
    paths.secrets.parent.mkdir(parents=True, exist_ok=True)
    paths.secrets.write_text("metadata_secret: Metadata-secret-0123\nadmin_password: Admin-pass-0123\n")
    tpaths = tls_paths(paths.config_dir, paths.state_dir)
    tls.ensure_certificates(tpaths, "c1", "127.0.0.1")
    port = _free_port()
    monkeypatch.setattr(enrol, "join_port", lambda profile: port)
    issuer = FakeIssuer()
    monkeypatch.setattr(commands, "controller_issuer", lambda ctx: issuer)
    up, discovered, said = {"c2": False}, [], []
    monkeypatch.setattr(commands, "_settle", lambda ctx, registry, say: Settle(
        registry, compute_up=lambda name: up[name], discover=lambda: discovered.append(1), say=say))
    monkeypatch.setattr(commands, "WAIT_POLL", 0.05)
    from appliance.cluster import joinserver
    monkeypatch.setattr(joinserver, "IDLE_POLL", 0.05)

    registry = NodeRegistry(paths.state_dir / "cluster")
    node, secret = registry.invite("c2", controller="c1", now=int(time.time()), lifetime=600)
    token = JoinToken(name="c2", host="127.0.0.1", port=port, expires=node.expires_at,
                      ca_sha256=controller_ca(tpaths).ca_sha256(), secret=secret)

    result = {}
    service = threading.Thread(target=lambda: result.update(rc=commands.join_service(paths, say=said.append)))
    service.start()
    try:
        deadline = time.monotonic() + 10
        while not any("listening on 127.0.0.1" in line for line in said):
            assert time.monotonic() < deadline, said
            time.sleep(0.02)
        from appliance.cluster.joinclient import join_controller

        bundle = join_controller(token, files=NodeFiles(config_dir=tmp_path / "node"), overlay_ip="10.254.0.201")
        assert (bundle.node, bundle.controller, bundle.metadata_secret) == ("c2", "c1", "Metadata-secret-0123")
        time.sleep(0.2)
        assert registry.get("c2").state == "joining" and service.is_alive()  # waiting for its nova-compute
        up["c2"] = True
    finally:
        service.join(timeout=10)
    assert not service.is_alive() and result == {"rc": 0}
    assert registry.get("c2").state == "joined" and discovered == [1]
    assert [c for c in issuer.calls if c != "ready"] == ["create_rabbitmq_user", "create_keystone_user", "allow_node"]
    assert said[-1] == "join service: no invitation to redeem and no node to wait for; stopped"
    assert "node c2: nova-compute is up and its host is mapped into the cell; joined" in said
