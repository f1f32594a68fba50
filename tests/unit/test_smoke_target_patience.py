"""The smoke bounds its API workflow by the target's slowness, read on the target itself
(the host running the smoke may be a KVM guest while the appliance is a TCG VM)."""

import pytest

from pipeline.smoke.__main__ import target_patience


class _Result:
    def __init__(self, stdout):
        self.stdout = stdout


class _Host:
    """testinfra's host, as far as target_patience uses it."""

    def __init__(self, virt):
        self.virt = virt
        self.commands = []

    def run(self, command):
        self.commands.append(command)
        return _Result(self.virt)


@pytest.mark.parametrize("virt, factor", [
    ("qemu\n", 4.0),   # full emulation (TCG)
    ("kvm\n", 1.0),
    ("none\n", 1.0),   # bare metal, or a container (--vm ignores it)
    ("", 1.0),         # systemd-detect-virt missing or silent
])
def test_target_patience_is_the_targets_own(virt, factor):
    host = _Host(virt)
    assert target_patience(host) == factor
    assert host.commands == ["systemd-detect-virt --vm"]
