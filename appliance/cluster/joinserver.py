"""The join service's socket: HTTPS on the controller's management address, one POST.

Around ``joinservice.handle_join`` (the order of a join, tested without a socket) this is the
wire, Python's ``ssl`` and ``http.server`` only (docs/scale-out.md, "Join flow")::

    POST /join   Content-Type: application/json, Content-Length <= joinservice.MAX_REQUEST
                 body: a JoinRequest {"name", "secret", "csr_pem", "overlay_ip"}
    200          application/json: the NodeBundle
    4xx          application/json {"kind": <errors.KINDS key>, "message": <its one line>},
                 the status of joinservice.STATUS (404 another path, 411 no length, 413 too long)
    500          {"kind": "internal", ...}: the join failed after its token was spent
    501          any other method (http.server's own answer)

TLS: a server certificate of the appliance CA for the controller's host name and management
address (``ensure_server_certificate``), presented with the CA certificate after it, so a node
that has no CA yet finds in the handshake the one its token pins (joinclient.py) and checks it
before it sends anything.

One connection at a time, one request per connection (HTTP/1.0), READ_TIMEOUT seconds for the
handshake and for the request: a join is rare, and a single thread keeps the registry's
read-modify-write in arrival order. It logs (``logging``, this module's name) the peer, the
node and the outcome of each request, never its body (the secret) nor the answer (passwords).
"""

from __future__ import annotations

import datetime
import http.server
import json
import logging
import ssl
import time
from pathlib import Path
from typing import Callable

from ..credentials import generate_secret
from ..files import atomic_write
from ..tls import TlsPaths, server_cert_problem
from .bundle import NodeBundle
from .ca import ApplianceCA
from .errors import ClusterError
from .joinservice import MAX_REQUEST, STATUS, Controller, Issuer, JoinRequest, handle_join, parse_request
from .registry import NodeRegistry

log = logging.getLogger(__name__)

PATH = "/join"
# Seconds a connection may take for its TLS handshake, then for its request: a node sends
# ~1 KiB at once; a connection that dawdles would hold up every other join.
READ_TIMEOUT = 10.0
# Seconds between two looks at whether an invitation is still pending (``serve``).
IDLE_POLL = 5.0

# (request, peer address) -> the node's bundle; ClusterError for a refusal.
Answer = Callable[[JoinRequest, str], NodeBundle]


def server_files(paths: TlsPaths) -> tuple[Path, Path]:
    """(key, certificate chain) of the join service: the key 0600 beside the CA's, the chain
    (server certificate, then the CA's) with the public certificates."""
    return paths.private_dir / "join.key", paths.public_dir / "join.crt"


def southbound_files(paths: TlsPaths) -> tuple[Path, Path]:
    """(key, certificate chain) of the OVN southbound database's TLS remote for the nodes."""
    return paths.private_dir / "ovnsb.key", paths.public_dir / "ovnsb.crt"


def ensure_server_certificate(ca: ApplianceCA, paths: TlsPaths, hostname: str, address: str,
                              now: datetime.datetime | None = None, *, files: tuple[Path, Path] | None = None,
                              what: str = "the join service's") -> str | None:
    """Issue the join service's certificate (or another server's: ``files``, ``what``) when
    it is missing or no longer fits (another CA, host name or address, or near its end:
    ``tls.server_cert_problem``). Returns what was done, one phrase without key material,
    or None when it was in place."""
    from cryptography import x509

    now = now or datetime.datetime.now(datetime.timezone.utc)
    key_file, chain_file = files or server_files(paths)
    ca_cert = x509.load_pem_x509_certificate(ca.ca_certificate_pem())
    try:
        problem = None if key_file.exists() else "missing"
        problem = problem or server_cert_problem(x509.load_pem_x509_certificate(chain_file.read_bytes()), ca_cert,
                                                 hostname, address, now)
    except (OSError, ValueError):
        problem = "missing"
    if problem is None:
        return None
    key_pem, cert_pem = ca.server_certificate(hostname, address, now)
    atomic_write(key_file, key_pem.decode("ascii"), mode=0o600)
    atomic_write(chain_file, (cert_pem + ca.ca_certificate_pem()).decode("ascii"), mode=0o644)
    return f"issued {what} certificate for {hostname} and {address} (was: {problem})"


def server_context(key_file: Path, chain_file: Path) -> ssl.SSLContext:
    """TLS 1.2 or later with the join service's key and chain; no client certificate (the
    node proves itself with the token's secret, inside the encrypted channel)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(chain_file), str(key_file))
    return context


class JoinServer(http.server.HTTPServer):
    """The listening socket at ``address`` (host, port; port 0 picks a free one), answering
    with ``answer``. TLS is set up per connection after accept, under READ_TIMEOUT, so a
    client that never finishes its handshake cannot hold the accept loop."""

    def __init__(self, address: tuple[str, int], *, context: ssl.SSLContext, answer: Answer,
                 handler: type[http.server.BaseHTTPRequestHandler] | None = None):
        self.context, self.answer = context, answer
        super().__init__(address, handler or JoinHandler)

    def get_request(self):
        sock, peer = self.socket.accept()
        sock.settimeout(READ_TIMEOUT)
        try:
            return self.context.wrap_socket(sock, server_side=True), peer
        except BaseException:
            sock.close()
            raise

    def handle_error(self, request, client_address) -> None:
        # http.server prints a traceback to stderr; a dropped connection or a timeout is a
        # line in the log, and what the client sent stays out of it.
        log.warning("join service: %s: connection dropped", client_address[0])


class JoinHandler(http.server.BaseHTTPRequestHandler):
    server: JoinServer
    server_version = "appliance-join"
    sys_version = ""
    timeout = READ_TIMEOUT

    def do_POST(self) -> None:
        peer = self.client_address[0]
        if self.path != PATH:
            return self._refuse(404, "malformed", f"the join service answers POST {PATH} only")
        length = self.headers.get("Content-Length")
        if length is None:
            return self._refuse(411, "malformed", "a join request says its Content-Length")
        if not length.isdigit() or int(length) > MAX_REQUEST:
            return self._refuse(413, "malformed", f"a join request is at most {MAX_REQUEST} bytes")
        body = self.rfile.read(int(length))
        try:
            request = parse_request(body.decode("utf-8", errors="replace"))
        except ClusterError as exc:
            return self._refused(peer, "-", exc)
        try:
            bundle = self.server.answer(request, peer)
        except ClusterError as exc:
            return self._refused(peer, request.name, exc)
        except Exception as exc:
            # Spent already (the registry redeems first): the node is told how to start over.
            detail = str(exc).replace(request.secret, "<secret>")[:300]
            log.error("join service: %s: node %s failed after its token was spent: %s: %s", peer, request.name,
                      type(exc).__name__, detail)
            return self._send(500, {"kind": "internal", "message": (
                f"the controller failed to complete the join of node {request.name} (its log says why); on the "
                f"controller: appliance remove-node {request.name}, then appliance add-node {request.name}")})
        log.info("join service: %s: node %s joined; its bundle was sent", peer, request.name)
        self._send(200, json.loads(bundle.to_json()))

    def _refused(self, peer: str, name: str, exc: ClusterError) -> None:
        log.warning("join service: %s: node %s refused (%s)", peer, name, exc.kind)
        self._refuse(STATUS.get(exc.kind, 400), exc.kind, str(exc))

    def _refuse(self, status: int, kind: str, message: str) -> None:
        self._send(status, {"kind": kind, "message": message})

    def _send(self, status: int, data: dict) -> None:
        body = json.dumps(data, sort_keys=True).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        """do_POST logs each outcome itself, with the node's name."""

    def log_error(self, format, *args) -> None:
        # http.server's own refusals (a bad request line, another method, a timeout) quote
        # what the client sent, which could be anything: only the status is logged.
        code = args[0] if args and isinstance(args[0], int) else "-"
        log.warning("join service: %s: refused by HTTP (%s)", self.client_address[0], code)


def controller_answer(*, registry: NodeRegistry, ca: ApplianceCA, issuer: Issuer, controller: Controller,
                      clock: Callable[[], float] = time.time,
                      new_password: Callable[[], str] = generate_secret) -> Answer:
    """``handle_join`` with the controller's parts, as JoinServer's ``answer``."""
    def answer(request: JoinRequest, peer: str) -> NodeBundle:
        return handle_join(request, peer=peer, registry=registry, ca=ca, issuer=issuer, controller=controller,
                           now=int(clock()), new_password=new_password)
    return answer


def serve(server: JoinServer, *, keep_going: Callable[[], bool], poll: float = IDLE_POLL) -> None:
    """Answer requests one by one while ``keep_going()`` (e.g. ``registry.has_pending(now)``:
    the service runs only while an invitation can be redeemed), looking at it after each
    request and at least every ``poll`` seconds; closes the socket when done."""
    server.timeout = poll
    with server:
        while keep_going():
            server.handle_request()
