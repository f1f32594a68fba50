"""A reboot of the session's appliance (`invoke boot --restart`): the power-off ends without
anything left to systemd's final kill, everything comes back on its own, first boot does
not run again, the running instance comes back ACTIVE with its data, and the smoke passes.

This module runs last against the session appliance (pytest runs modules in name order)
and leaves the instance running, so the session's teardown (`--stop`) must release its
disk's loop device too (the `booted()` context asserts no loop device remains)."""

import json
from dataclasses import fields

import pytest

from pipeline.harness import local

from .conftest import PROFILE, in_appliance, smoke
from .instance_data import SERVER_BACK, SERVER_WITH_DATA
from .test_appliance import external_host_side, journal

pytestmark = pytest.mark.e2e

# What systemd-shutdown prints when processes outlived every unit's stop (seen before the
# fix: the instance's systemd, respawning its services until the 90 s SIGKILL).
LEFT_TO_FINAL_KILL = ("Waiting for process:", "Sending SIGKILL to PID")
# Less than systemd-shutdown's own 90 s wait: a power-off that waited on it takes longer.
POWER_OFF_BOUND_S = 90


def test_restart_brings_everything_back(appliance):
    before = json.loads(in_appliance(appliance, "python3", "-c", SERVER_WITH_DATA).stdout)
    journal_before = journal(appliance)
    console_offset = appliance.console_log.stat().st_size

    state, power_off_s = local.restart(PROFILE, name=appliance.name)
    # The session fixture's state follows the restarted container (its pids changed).
    for field in fields(state):
        setattr(appliance, field.name, getattr(state, field.name))
    shutdown = appliance.console_log.read_bytes()[console_offset:].decode(errors="replace")
    print(f"power-off with 1 instance: {power_off_s:.1f} s")
    left = [line for line in shutdown.splitlines() if any(mark in line for mark in LEFT_TO_FINAL_KILL)]
    assert not left, "processes outlived the units' stop and were left to systemd-shutdown:\n" + shutdown[-3000:]
    assert "Shutdown of guest" in shutdown, "libvirt-guests did not shut the instance down:\n" + shutdown[-3000:]
    assert power_off_s < POWER_OFF_BOUND_S

    ready_s = local.wait_until_ready(appliance)
    print(f"restart → ready: {ready_s:.0f} s (from the container's start)")

    # First boot did not run again: its unit was skipped (the done marker) and the journal
    # is the one first boot left, every step done, none re-run.
    assert journal(appliance) == journal_before
    started = in_appliance(appliance, "systemctl", "show", "-p", "ExecMainStartTimestampMonotonic",
                           "appliance-firstboot").stdout.strip()
    assert started == "ExecMainStartTimestampMonotonic=0", started
    failed = in_appliance(appliance, "systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout
    assert not failed.strip(), failed

    host_side = external_host_side(appliance)
    assert len(host_side["nat_rules"]) == 1, host_side
    assert host_side == {**host_side, "bridges": ["br-external"], "forwarding": "1"}, host_side

    back = json.loads(in_appliance(appliance, "python3", "-c", SERVER_BACK, before["id"], before["fip"], "600").stdout)
    print(f"instance ACTIVE again {back['active_s']} s after ready, its file over SSH after {back['ssh_s']} s")
    assert back["data"] == before["data"]

    result = smoke(appliance)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
