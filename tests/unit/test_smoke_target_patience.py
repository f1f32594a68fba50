"""The smoke bounds its API workflow by the target's timeout scale, read on the target itself
(the host running the smoke may be a KVM guest while the appliance is a TCG VM): the host
fact ``patience`` its first boot recorded from the site's ``timeouts.scale``."""

import pytest

from pipeline.smoke.__main__ import target_patience


class _Result:
    def __init__(self, rc, stdout):
        self.rc, self.stdout = rc, stdout


class _Host:
    """testinfra's host, as far as target_patience uses it."""

    def __init__(self, rc, facts):
        self.result = _Result(rc, facts)
        self.commands = []

    def run(self, command):
        self.commands.append(command)
        return self.result


@pytest.mark.parametrize("rc, facts, factor", [
    (0, '{"hostname": "c", "patience": 4.0}', 4.0),  # timeouts.scale 4 (a TCG VM)
    (0, '{"hostname": "c", "patience": 1.0}', 1.0),
    (0, '{"hostname": "c"}', 1.0),  # recorded by an image older than the fact
    (1, "", 1.0),  # first boot has not recorded facts yet
    (0, "not json", 1.0),
    (0, "[4]", 1.0),
], ids=["scale-4", "scale-1", "no-fact", "no-file", "garbage", "not-a-mapping"])
def test_target_patience_is_the_targets_own(rc, facts, factor):
    host = _Host(rc, facts)
    assert target_patience(host) == factor
    assert host.commands == ["cat /var/lib/appliance/facts.json"]
