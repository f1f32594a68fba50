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


def _ctx(agents=("ovn-controller", "neutron-ovn-metadata-agent"), role="controller"):
    from types import SimpleNamespace

    return SimpleNamespace(profile=SimpleNamespace(network=SimpleNamespace(agents=agents)), role=role)


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
    lines = status.api_health(_ctx(), report)
    assert lines and (lines[0].startswith("  (APIs not answering") == isinstance(report, Exception))


# A compute node asks Placement as its own user: (label, providers its user sees, summary, health line).
NODE_ROWS = [
    ("listed", ["c1", "node1"], "cloud ready", "  resource provider node1             listed in Placement"),
    ("listed with a domain", ["node1.example.org"], "cloud ready", "listed in Placement"),
    ("not listed yet", ["c1", "node10"], "services up, waiting for nova-compute of node1: no resource provider in "
     "Placement", "not listed in Placement"),
]


@pytest.mark.parametrize("label,providers,summary,health", NODE_ROWS, ids=[r[0] for r in NODE_ROWS])
def test_a_compute_node_is_ready_once_placement_lists_its_provider(label, providers, summary, health):
    from appliance.agent import status
    from appliance.agent.status_roles import NodeReport

    ctx, report = _ctx(role="compute"), NodeReport(node="node1", controller="c1", providers=providers)
    assert status.ready_summary(ctx, report) == summary
    assert health in status.api_health(ctx, report)[0]
    assert status.api_health(ctx, ConnectionError("refused"))[0] == "  (APIs not answering: refused)"


def test_each_role_says_what_it_is(tmp_path):
    from types import SimpleNamespace

    from appliance.agent.context import Paths
    from appliance.agent.status_roles import controller_line, node_line
    from appliance.cluster.registry import NodeRegistry

    paths = Paths(config_dir=tmp_path / "etc", state_dir=tmp_path / "var")
    ctx = SimpleNamespace(paths=paths, role="controller")
    assert controller_line(ctx) == "role: controller; compute nodes: none"
    NodeRegistry(paths.state_dir / "cluster").invite("node1", controller="c1", now=1000, lifetime=3600)
    assert controller_line(ctx) == "role: controller; compute nodes: node1 (invited)"
    assert node_line(SimpleNamespace(paths=paths, role="compute")) == "role: compute node (joining: no bundle yet)"
