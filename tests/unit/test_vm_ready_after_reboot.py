"""The VM harness's "ready after a reboot" condition, run by bash against a stand-in
``openstack`` that prints what the APIs would (the condition is shell, run in the VM)."""

import os
import subprocess

import pytest

from pipeline.harness import vm

UP = "up\nup\nup\n"
ALIVE = "True\nTrue\nTrue\nTrue\n"


def ready(tmp_path, services, agents, servers) -> bool:
    """services/agents/servers: the lists' output, or None for a command that fails."""
    for name, out in (("services", services), ("agents", agents), ("servers", servers)):
        if out is None:
            (tmp_path / name).unlink(missing_ok=True)
        else:
            (tmp_path / name).write_text(out)
    fake = tmp_path / "openstack"
    fake.write_text(
        "#!/bin/bash\n"
        f"case \"$*\" in *'compute service list'*) f={tmp_path}/services;; "
        f"*'network agent list'*) f={tmp_path}/agents;; *'server list'*) f={tmp_path}/servers;; esac\n"
        "[ -e \"$f\" ] || { echo 'Failed to discover available identity versions' >&2; exit 1; }\n"
        "cat \"$f\"\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", vm.READY_AFTER_REBOOT], env=env).returncode == 0


@pytest.mark.parametrize("services, agents, servers, expected", [
    (UP, ALIVE, "ACTIVE\nACTIVE\n", True),
    (UP, ALIVE, "", True),                           # no instance to wait for
    (UP, ALIVE, "ACTIVE\nSHUTOFF\n", False),         # an instance not back yet
    (UP, ALIVE, "ACTIVE\nERROR", False),
    ("up\ndown\nup\n", ALIVE, "ACTIVE\n", False),    # a Nova service not up yet
    ("", ALIVE, "", False),                          # no Nova service registered
    (UP, "True\nFalse\n", "", False),                # a dead Neutron agent
    (None, ALIVE, "", False),                        # Keystone not answering yet
    (UP, None, "", False),                           # Neutron's API not answering yet
    (UP, ALIVE, None, False),                        # Nova's API not answering yet
])
def test_ready_after_reboot(tmp_path, services, agents, servers, expected):
    assert ready(tmp_path, services, agents, servers) is expected
