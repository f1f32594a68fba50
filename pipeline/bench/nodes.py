"""`invoke bench --nodes 2`: a controller and one compute node side by side in the container
harness, each boot a fresh pair. Figures: join time (the token made → the node's nova-compute
up in the controller's service list, the node's own boot included), the node's first-boot
steps, the compute role's idle memory, and a burst of instances in one request, which the
scheduler spreads over both hosts (how many landed on each is an event of the record).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from appliance.errors import ApplianceError

from ..harness import local
from ..harness.target import ContainerTarget
from .measured import measure

NODE = 1
NODE_NAME = "node1"
TOKEN_FILE = "/root/bench-node1.token"
# How long the controller gets to list the node's nova-compute up once the node booted.
JOIN_WAIT_S = 900


def _run(target: ContainerTarget, argv: list[str], timeout: float = 600) -> str:
    result = target.run(argv, timeout=timeout)
    if result.returncode != 0:
        raise ApplianceError(f"{' '.join(argv[:4])} failed in the {target.kind} (exit {result.returncode}): "
                             f"{result.stderr.strip()[-300:]}")
    return result.stdout


def nova_compute_up(controller: ContainerTarget, host: str) -> bool:
    listed = json.loads(_run(controller, ["bash", "-lc", "source /root/rc.admin && openstack compute service "
                                                         "list --service nova-compute -f json"], timeout=120))
    return any(s["Host"].split(".")[0] == host and s["State"] == "up" for s in listed)


def _site_with_token(controller: ContainerTarget, directory: Path) -> Path:
    """The node's site config (0600) with the controller's token; the token never reaches a
    command line or the bench's output."""
    _run(controller, ["python3", "-m", "appliance", "add-node", NODE_NAME, "--out", TOKEN_FILE])
    token = _run(controller, ["cat", TOKEN_FILE]).strip()
    site = directory / "node.yaml"
    fd = os.open(site, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"join: {{token: '{token}'}}\n")
    return site


def one_pair_boot(bench, index: int, *, burst: int, settle_s: float) -> None:
    """``bench``: a run.Bench. Leaves nothing booted."""
    profile, quiet = bench.profile, (lambda line: None)
    node_name = local.node_name(profile, NODE)
    local.stop(profile, name=node_name, say=bench.say)
    local.stop(profile, say=bench.say)
    bench.say(f"[bench] pair {index}: booting a fresh controller")
    controller = ContainerTarget(profile=profile, artifacts=bench.artifacts, from_tree=bench.from_tree, overlay=True)
    node = ContainerTarget(profile=profile, artifacts=bench.artifacts, from_tree=bench.from_tree, node=NODE)
    try:
        controller.boot()
        controller.wait_for_first_boot(say=quiet)
        with tempfile.TemporaryDirectory(prefix="appliance-bench-") as scratch:
            site = _site_with_token(controller, Path(scratch))
            invited = time.monotonic()
            bench.say(f"[bench] pair {index}: booting node {NODE_NAME} with its token")
            node.boot(site=site)
        journal = node.wait_for_first_boot(say=quiet)
        bench.add("join: token → node's first boot done", time.monotonic() - invited)
        for name, step in journal["steps"].items():
            bench.add(f"node first-boot step: {name}", step["seconds"] or 0.0)
        deadline = time.monotonic() + JOIN_WAIT_S
        while not nova_compute_up(controller, NODE_NAME):
            if time.monotonic() > deadline:
                raise ApplianceError(f"{NODE_NAME}'s nova-compute not up on the controller within {JOIN_WAIT_S} s")
            time.sleep(2)
        joined = time.monotonic() - invited
        bench.add("join: token → nova-compute up on the controller", joined)
        bench.event(f"pair {index}: {NODE_NAME} joined, nova-compute up {joined:.1f} s after its token was made")
        time.sleep(settle_s)
        idle = measure(node, "memory")[0]
        bench.add("compute node idle memory, RSS summed", idle["rss_mib"], "MiB")
        bench.add("compute node idle memory, PSS summed", idle["pss_mib"], "MiB")
        bench.event(f"pair {index}: compute node idle PSS {idle['pss_mib']:.0f} MiB, {idle['processes']} processes; "
                    "largest: " + ", ".join(f"{n} {m} MiB×{c}" for n, m, c in idle["top"][:6]))
        if burst:
            result = measure(controller, "burst", str(burst))[0]
            bench.add("two hosts, burst: all ACTIVE", result["all_active_s"])
            bench.add("two hosts, burst: failed instances", result["failed"], "count")
            bench.add("two hosts, burst: delete all → gone", result["delete_all_s"])
            bench.event(f"pair {index}: {burst} instances in one request: {result['active']} ACTIVE, "
                        f"{result['failed']} failed, {result['all_active_s']} s; by host: {result.get('hosts')}")
    finally:
        local.stop(profile, name=node_name, say=quiet)
        local.stop(profile, say=quiet)
