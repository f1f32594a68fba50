"""A controller's join service on 127.0.0.1 for the tests: a CA made in tmp_path as first boot
makes it, the real JoinServer on an ephemeral port in a thread, a registry under tmp_path,
and a fake Issuer (the cloud side). Loopback only; nothing of the host is read or written."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance import tls
from appliance.cluster import joinserver
from appliance.cluster.ca import ApplianceCA, controller_ca, tls_paths
from appliance.cluster.joinservice import Controller
from appliance.cluster.registry import NodeRegistry
from appliance.cluster.token import JoinToken

HOST = "127.0.0.1"
PASSWORDS = ("Rabbit-pass-0123", "Keystone-pass-0123")
METADATA_SECRET = "Metadata-secret-0123"


class FakeIssuer:
    """Records the cloud side's calls; ``fail`` names one to raise from (with the password
    in its message, as a careless implementation might)."""

    def __init__(self, fail: str | None = None):
        self.calls, self.fail = [], fail

    def __getattr__(self, name):
        def call(*args):
            if name == self.fail:
                raise RuntimeError(f"{name} failed for {args}")
            self.calls.append((name, *args))
        return call


class RecordingHandler(joinserver.JoinHandler):
    """The service's handler, keeping every byte each connection sent after the handshake."""

    received: list[bytearray] = []
    finished = 0

    def setup(self):
        super().setup()
        seen = bytearray()
        type(self).received.append(seen)
        self.rfile = _Tee(self.rfile, seen)

    def finish(self):
        try:
            super().finish()
        finally:
            type(self).finished += 1


class _Tee:
    def __init__(self, inner, sink: bytearray):
        self.inner, self.sink = inner, sink

    def readline(self, *args):
        data = self.inner.readline(*args)
        self.sink.extend(data)
        return data

    def read(self, *args):
        data = self.inner.read(*args)
        self.sink.extend(data)
        return data

    def __getattr__(self, name):
        return getattr(self.inner, name)


@dataclass
class Service:
    paths: tls.TlsPaths
    ca: ApplianceCA
    registry: NodeRegistry
    issuer: FakeIssuer
    server: joinserver.JoinServer
    thread: threading.Thread = field(repr=False)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def received(self, connections: int) -> list[bytearray]:
        """What each connection sent after its handshake, once the service is done with
        ``connections`` of them (a client may return before the service's thread has read
        its close)."""
        deadline = time.monotonic() + 5
        while RecordingHandler.finished < connections and time.monotonic() < deadline:
            time.sleep(0.01)
        return RecordingHandler.received

    def invite(self, name: str = "c2", *, ago: int = 0, lifetime: int = 3600, pin: str | None = None) -> JoinToken:
        """A token for ``name`` as add-node prints it, invited ``ago`` seconds before now."""
        node, secret = self.registry.invite(name, controller="c1", now=int(time.time()) - ago, lifetime=lifetime)
        return JoinToken(name=name, host=HOST, port=self.port, expires=node.expires_at,
                         ca_sha256=pin or self.ca.ca_sha256(), secret=secret)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def make_ca(base: Path, address: str = HOST) -> tuple[tls.TlsPaths, ApplianceCA]:
    paths = tls_paths(base / "etc", base / "var")
    tls.ensure_certificates(paths, "c1", address)
    return paths, controller_ca(paths)


def start(base: Path, *, issuer: FakeIssuer | None = None, server_address: str = HOST) -> Service:
    """The join service of a controller under ``base``, its certificate for ``server_address``."""
    paths, ca = make_ca(base)
    joinserver.ensure_server_certificate(ca, paths, "c1", server_address)
    registry, issuer = NodeRegistry(base / "state" / "cluster"), issuer or FakeIssuer()
    passwords = iter(PASSWORDS * 10)
    answer = joinserver.controller_answer(
        registry=registry, ca=ca, issuer=issuer,
        controller=Controller(hostname="c1", management_ip=HOST, region="RegionOne",
                              keystone_url="http://c1:5000/v3", metadata_secret=METADATA_SECRET),
        new_password=lambda: next(passwords))
    RecordingHandler.received, RecordingHandler.finished = [], 0
    server = joinserver.JoinServer((HOST, 0), context=joinserver.server_context(*joinserver.server_files(paths)),
                                   answer=answer, handler=RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return Service(paths=paths, ca=ca, registry=registry, issuer=issuer, server=server, thread=thread)


def controller_paths(tmp_path: Path, management_ip: str = "10.254.0.10", finished: bool = True):
    """A trixie-epoxy controller's agent Paths under ``tmp_path`` (its resolved profile,
    nothing of this host's); ``finished``: its first boot done and its facts written."""
    import json

    from appliance.agent.context import Paths
    from pipeline.profiles import resolved_profile_yaml

    profile = tmp_path / "profile.yaml"
    profile.write_text(resolved_profile_yaml("trixie-epoxy"))
    paths = Paths(profile=profile, images=tmp_path, config_dir=tmp_path / "etc", state_dir=tmp_path / "state",
                  run_dir=tmp_path / "run")
    if finished:
        paths.state_dir.mkdir()
        paths.done_marker.touch()
        paths.facts.write_text(json.dumps({"hostname": "c1", "management_ip": management_ip,
                                           "overlay_ip": management_ip}))
    return paths
