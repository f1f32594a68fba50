"""The smoke's reading of an ssh attempt (appliance.selftest.guest.ssh_outcome): a command that
ran, one that failed, and one still hanging when its time is up are three different answers
(a security group check must not take a hung connection for a refused one)."""

import pytest

from appliance.selftest import guest


@pytest.mark.parametrize("cmd, outcome", [
    (["true"], "ran"),
    (["false"], "failed"),
    (["sh", "-c", "exit 255"], "failed"),  # what ssh exits with when it cannot connect
    (["sleep", "5"], "hung"),
])
def test_ssh_outcome(monkeypatch, cmd, outcome):
    monkeypatch.setattr(guest, "patience", lambda: 1.0)
    assert guest.ssh_outcome(cmd, timeout=0.5) == outcome


class FakeCompute:
    """Nova's os-getConsoleOutput as openstacksdk returns it, or its failure."""

    def __init__(self, output=None, error=None):
        self.output, self.error = output, error

    def get_server_console_output(self, server, length=None):
        if self.error:
            raise self.error
        return {"output": "\n".join(self.output.splitlines()[-length:])}


class FakeConn:
    def __init__(self, **kw):
        self.compute = FakeCompute(**kw)


@pytest.mark.parametrize("conn, cmd, expect", [
    (FakeConn(output="boot\n\nCalling 'http://169.254.169.254/openstack' failed [30/30s]\n"), ["false"],
     "SSH to the instance not within 0.3 s; console: boot | Calling 'http://169.254.169.254/openstack' failed"),
    (FakeConn(error=RuntimeError("HTTP 409")), ["false"], "not within 0.3 s; console: (no console log: HTTP 409)"),
    (FakeConn(error=RuntimeError("never asked")), ["true"], None),
], ids=["console-tail-in-error", "console-unavailable", "ssh-answers"])
def test_wait_ssh_explains_a_guest_it_cannot_reach(monkeypatch, conn, cmd, expect):
    monkeypatch.setattr(guest, "patience", lambda: 1.0)
    if expect is None:
        assert guest.wait_ssh(conn, "server-id", cmd, timeout=0.3).returncode == 0
        return
    with pytest.raises(AssertionError) as err:
        guest.wait_ssh(conn, "server-id", cmd, timeout=0.3)
    assert expect in str(err.value)
