"""A stand-in for a host on the internet, run by the harness inside its uplink namespace:
it answers every TCP connection with the source address it came from, one line, and closes.

    python -m pipeline.harness.responder ADDRESS PORT
"""

from __future__ import annotations

import socket
import sys


def serve(address: str, port: int) -> None:
    with socket.create_server((address, port), reuse_port=False) as server:
        while True:
            conn, (peer, _) = server.accept()
            with conn:
                conn.settimeout(5)
                try:
                    conn.sendall(f"{peer}\n".encode())
                except OSError:
                    pass


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
