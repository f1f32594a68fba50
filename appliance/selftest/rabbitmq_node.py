"""`appliance selftest rabbitmq-node`: where an Erlang node started the way RabbitMQ starts its
one-off nodes listens.

RabbitMQ's server starts one-off Erlang nodes (``erl -sname``, epmd keep-alive) with its own
environment, as its own user; ERL_ZFLAGS there must keep them on loopback. This starts one
the same way, prints ``{"name": "rabbitmq-node", "addresses": ["127.0.0.1:PORT", ...]}`` once it
listens, and kills it. Exit 1 with the reason on stderr when it does not listen within
120 s times the site's timeouts.scale.
"""

import json
import os
import subprocess
import sys
import time


def server_pid() -> int:
    out = subprocess.run(["systemctl", "show", "-P", "MainPID", "rabbitmq-server.service"], capture_output=True,
                         text=True, check=True).stdout.strip()
    if out in ("", "0"):
        raise SystemExit("rabbitmq-server has no main process")
    return int(out)


def listening(pid: int) -> list[str]:
    lines = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout.splitlines()
    return [line.split()[3] for line in lines if f"pid={pid}," in line]


def main() -> int:
    from .guest import patience

    with open(f"/proc/{server_pid()}/environ") as handle:
        env = dict(item.split("=", 1) for item in handle.read().split("\0") if "=" in item)
    node = subprocess.Popen(["erl", "-boot", "no_dot_erlang", "-sname", f"appliance-selftest-{os.getpid()}", "-noinput",
                             "-eval", "timer:sleep(600000), halt()."], env=env, user="rabbitmq", group="rabbitmq",
                            # The server's own working directory: Erlang 27 (Debian 13) looks
                            # for the boot file there first and stops at one it may not read.
                            cwd=env.get("PWD") or env.get("HOME") or "/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120 * patience()
        while time.monotonic() < deadline:
            addresses = listening(node.pid)
            if addresses:
                print(json.dumps({"name": "rabbitmq-node", "addresses": addresses}), flush=True)
                return 0
            if node.poll() is not None:
                print(f"erl exited {node.returncode} before listening", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print("the node did not listen in time", file=sys.stderr)
        return 1
    finally:
        node.kill()
