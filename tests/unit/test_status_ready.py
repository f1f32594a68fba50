"""`appliance status`'s reading of Nova's service list: a service counts once it has
reported since its unit started (Nova still calls the previous boot's last report "up")."""

import pytest

from appliance.agent.status import NOVA_SERVICES, nova_waiting

START = 1_800_000_000.0                    # every unit's start, epoch seconds
BEFORE = "2027-01-15T07:59:50.000000"      # 10 s before START, UTC as Nova writes it
AFTER = "2027-01-15T08:00:10.000000"       # 10 s after START
STARTED = {b: START for b in NOVA_SERVICES}


def listed(**changes):
    """Nova's list with every service up, enabled and reported after START; ``changes``
    maps a binary (underscores for dashes) to the tuple replacing its row, None to drop it."""
    rows = {b: (b, "up", "enabled", AFTER) for b in NOVA_SERVICES}
    for key, row in changes.items():
        rows[key.replace("_", "-")] = row
    return [r for r in rows.values() if r is not None]


@pytest.mark.parametrize("services, started, expected", [
    (listed(), STARTED, []),
    (listed(nova_compute=("nova-compute", "up", "enabled", BEFORE)), STARTED,
     ["nova-compute: no report since its start"]),                     # the previous boot's report
    (listed(nova_compute=("nova-compute", "up", "enabled", None)), STARTED,
     ["nova-compute: no report since its start"]),
    (listed(nova_scheduler=("nova-scheduler", "down", "enabled", BEFORE)), STARTED, ["nova-scheduler: down"]),
    (listed(nova_compute=("nova-compute", "up", "disabled", AFTER)), STARTED, ["nova-compute: disabled"]),
    (listed(nova_conductor=None), STARTED, ["nova-conductor: not registered"]),
    (listed(), {**STARTED, "nova-compute": None}, ["nova-compute: its unit is not running"]),
    (listed(nova_compute=("nova-compute", "up", "enabled", "2027-01-15T08:00:10+00:00")), STARTED, []),
])
def test_nova_waiting(services, started, expected):
    assert nova_waiting(services, started) == expected


def _ctx(agents=("ovn-controller", "neutron-ovn-metadata-agent")):
    from types import SimpleNamespace

    return SimpleNamespace(profile=SimpleNamespace(network=SimpleNamespace(agents=agents)))


@pytest.mark.parametrize("report, expected", [
    (ConnectionError("Unable to establish connection to http://10.0.0.1:8774"),
     "services up, APIs not answering yet (Unable to establish connection to http://10.0.0.1:8774)"),
    ("agent down", "services up, waiting for neutron-ovn-metadata-agent: not alive"),
    ("all up", "cloud ready"),
], ids=["APIs not answering", "an agent not alive", "all up"])
def test_ready_summary_from_one_api_report(monkeypatch, report, expected):
    from appliance.agent import status

    monkeypatch.setattr(status, "unit_started_at", lambda units: {u: 1000.0 for u in units})
    if isinstance(report, str):
        services = [(b, "up", "enabled", "2026-12-05T10:00:00") for b in NOVA_SERVICES]
        agents = [("ovn-controller", True), ("neutron-ovn-metadata-agent", report == "all up")]
        report = status.ApiReport(services=services, agents=agents)
    assert status.ready_summary(_ctx(), report) == expected
    lines = status.api_health(report)
    assert lines and (lines[0].startswith("  (APIs not answering") == isinstance(report, Exception))
