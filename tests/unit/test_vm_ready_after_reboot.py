"""The VM harness's "ready after a reboot" condition, run by bash against stand-ins for
``appliance`` and ``openstack`` (the condition is shell, run in the VM)."""

import os
import subprocess

import pytest

from pipeline.harness import vm


def ready(tmp_path, status_rc, servers) -> bool:
    """status_rc: `appliance status --brief`'s exit status; servers: the server list's
    output, or None for a command that fails."""
    if servers is None:
        (tmp_path / "servers").unlink(missing_ok=True)
    else:
        (tmp_path / "servers").write_text(servers)
    (tmp_path / "appliance").write_text(f"#!/bin/bash\necho 'appliance: ...'\nexit {status_rc}\n")
    (tmp_path / "openstack").write_text(
        "#!/bin/bash\n"
        f"case \"$*\" in *'server list'*) f={tmp_path}/servers;; esac\n"
        "[ -e \"$f\" ] || { echo 'Failed to discover available identity versions' >&2; exit 1; }\n"
        "cat \"$f\"\n")
    for tool in ("appliance", "openstack"):
        (tmp_path / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", vm.READY_AFTER_REBOOT], env=env).returncode == 0


@pytest.mark.parametrize("status_rc, servers, expected", [
    (0, "ACTIVE\nACTIVE\n", True),
    (0, "", True),                           # no instance to wait for
    (0, "ACTIVE\nSHUTOFF\n", False),        # an instance not back yet
    (0, "ACTIVE\nERROR", False),
    (1, "ACTIVE\n", False),                  # a unit, a Nova service or an agent not up yet
    (0, None, False),                        # Nova's API not answering yet
])
def test_ready_after_reboot(tmp_path, status_rc, servers, expected):
    assert ready(tmp_path, status_rc, servers) is expected
