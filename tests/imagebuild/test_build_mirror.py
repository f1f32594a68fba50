import http.server
import socket
import threading
import time

import pytest

from appliance.errors import ApplianceError
from pipeline.imagebuild.mirror import MirrorCheck, check_mirror


def closed_port() -> int:
    # Bind, note the port, close: nothing listens there afterwards.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def local_mirror():
    """A loopback HTTP server that has dists/bookworm/Release and nothing else."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200 if self.path == "/debian/dists/bookworm/Release" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/debian"
    server.shutdown()
    server.server_close()


def test_release_url():
    assert MirrorCheck("http://m/ubuntu/", "xenial", "V").release_url == "http://m/ubuntu/dists/xenial/Release"


def test_closed_port_fails_in_seconds_naming_the_variable():
    check = MirrorCheck(f"http://127.0.0.1:{closed_port()}/ubuntu", "xenial", "DIB_DISTRIBUTION_MIRROR")
    start = time.monotonic()
    with pytest.raises(ApplianceError, match="DIB_DISTRIBUTION_MIRROR") as caught:
        check_mirror(check, timeout=2)
    assert time.monotonic() - start < 3
    assert "dists/xenial/Release" in str(caught.value)


def test_answering_mirror_passes(local_mirror):
    check_mirror(MirrorCheck(local_mirror, "bookworm", "DIB_DISTRIBUTION_MIRROR"), timeout=2)


def test_missing_suite_is_an_error(local_mirror):
    with pytest.raises(ApplianceError, match="HTTP 404"):
        check_mirror(MirrorCheck(local_mirror, "xenial", "DIB_DISTRIBUTION_MIRROR"), timeout=2)
