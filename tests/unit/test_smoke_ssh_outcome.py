"""The smoke's reading of an ssh attempt (pipeline.smoke.guest.ssh_outcome): a command that
ran, one that failed, and one still hanging when its time is up are three different answers
(a security group check must not take a hung connection for a refused one)."""

import pytest

from pipeline.smoke import guest


@pytest.mark.parametrize("cmd, outcome", [
    (["true"], "ran"),
    (["false"], "failed"),
    (["sh", "-c", "exit 255"], "failed"),  # what ssh exits with when it cannot connect
    (["sleep", "5"], "hung"),
])
def test_ssh_outcome(monkeypatch, cmd, outcome):
    monkeypatch.setattr(guest, "patience", lambda: 1.0)
    assert guest.ssh_outcome(cmd, timeout=0.5) == outcome
