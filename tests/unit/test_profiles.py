"""Profiles are data: both load, reference existing templates, and reject bad data."""

from pathlib import Path

import pytest
import yaml

from appliance import credentials
from appliance.errors import ApplianceError, ConfigError
from appliance.profiles import parse_profile
from appliance.render import REPO_OVERLAYS
from pipeline.profiles import PROFILE_DIR, available_profiles, load_profile, resolved_profile_yaml


def test_all_profiles_exist():
    assert available_profiles() == ["bookworm-zed", "trixie-epoxy", "xenial-newton"]


def _files_of_every_role(name):
    """The files of each role of profile ``name``: a node's templates are used there only."""
    from appliance.roles import profile_for_role

    profile = load_profile(name)
    return [spec for role in profile.role_names() for spec in profile_for_role(profile, role).files()]


@pytest.mark.parametrize("name", ["bookworm-zed", "trixie-epoxy", "xenial-newton"])
def test_profile_templates_exist(name):
    for spec in _files_of_every_role(name):
        assert (REPO_OVERLAYS / spec.template).is_file(), spec.template


def test_every_template_is_used_by_a_profile():
    used = {spec.template for name in available_profiles() for spec in _files_of_every_role(name)}
    templates = {str(p.relative_to(REPO_OVERLAYS)) for p in REPO_OVERLAYS.rglob("*.j2")}
    helpers = {t for t in templates if Path(t).name.startswith("_")}
    assert templates - helpers == used


def test_zed_carries_the_zed_differences():
    zed = load_profile("bookworm-zed")
    assert zed.identity.admin_port == zed.identity.public_port == 5000
    assert zed.identity.authtoken_uri_option == "www_authenticate_uri"
    assert "nova_cell0" in zed.service("nova").databases
    assert {"nova-compute-lxc", "neutron-linuxbridge-agent", "placement-api"} <= set(zed.packages())
    assert zed.distro.dib_element == "debian-minimal" and zed.distro.release == "bookworm"


def test_newton_matches_the_reference_layout():
    newton = load_profile("xenial-newton")
    assert newton.identity.admin_port == 35357
    assert {"nova-consoleauth", "glance-registry"} <= set(newton.units())
    assert not newton.has_service("placement")
    assert newton.service("nova").endpoint.url == "http://{host}:8774/v2.1/%(tenant_id)s"


def _zed_data():
    return yaml.safe_load((PROFILE_DIR / "bookworm-zed.yaml").read_text())


def test_unknown_key_in_profile_names_it():
    data = _zed_data()
    data["services"][1]["pakages"] = ["x"]
    with pytest.raises(ConfigError, match=r"services\[1\]\.pakages: unknown key"):
        parse_profile(data, "test.yaml")


def test_duplicate_file_path_is_rejected():
    data = _zed_data()
    data["services"][1]["files"].append(dict(data["services"][1]["files"][0]))
    with pytest.raises(ConfigError, match="written by two services"):
        parse_profile(data, "test.yaml")


def test_bad_mode_is_rejected():
    data = _zed_data()
    data["services"][1]["files"][0]["mode"] = "rw-r--r--"
    with pytest.raises(ConfigError, match=r"files\[0\]\.mode: expected an octal mode"):
        parse_profile(data, "test.yaml")


def test_unknown_profile():
    with pytest.raises(ApplianceError, match="unknown profile 'nope'"):
        load_profile("nope")


def test_rpc_gate_names_only_units_of_the_profile():
    profile = load_profile("bookworm-zed")
    assert "nova-compute" in profile.rpc_gate.units and "q-l3-plugin" in profile.rpc_gate.queues
    data = _zed_data()
    data["rpc_gate"]["units"].append("neutron-openvswitch-agent")
    with pytest.raises(ConfigError, match=r"rpc_gate\.units\[5\]: neutron-openvswitch-agent is not a unit"):
        parse_profile(data, "test.yaml")


def test_gated_units_are_started_after_the_rest(monkeypatch):
    from appliance.agent import steps_openstack

    class Ctx:
        profile = load_profile("bookworm-zed")
        active_profile = profile

    started, waited = [], []
    monkeypatch.setattr(steps_openstack, "enable_and_start", lambda units: started.append(list(units)))
    monkeypatch.setattr(steps_openstack, "wait_for", lambda what, probe, **kw: waited.append(what))
    steps_openstack.start_servers(Ctx())
    steps_openstack.start_gated(Ctx())
    servers, gated = started
    assert "neutron-rpc-server" in servers and "nova-conductor" in servers and "nova-compute" not in servers
    assert "apache2" in servers
    assert set(gated) == set(Ctx.profile.rpc_gate.units)
    assert waited == ["RPC servers consuming q-plugin, q-l3-plugin, q-reports-plugin, conductor"]


@pytest.mark.parametrize("name", ["bookworm-zed", "trixie-epoxy"])
def test_a_site_that_turns_the_dashboard_off_runs_renders_and_starts_none_of_it(tmp_path, monkeypatch, name):
    from appliance.agent import steps_dashboard, steps_openstack
    from appliance.render import HostFacts, render_files
    from appliance.sitefile import load_site

    profile = load_profile(name)
    site_file = tmp_path / "appliance.yaml"
    site_file.write_text("dashboard: {enabled: false}\n")
    site = load_site(site_file, profile)
    active = profile.active(site)
    assert not active.has_service("dashboard") and profile.active(load_site(None, profile)) is profile
    assert "apache2" not in active.units() and 443 not in {p.port for s in active.services for p in s.ports}
    secrets = {n: "x" * 16 for n in credentials.secret_names(profile)}
    paths = {f.spec.path for f in render_files(profile, site, HostFacts.from_site(site), secrets)}
    assert not any(p.startswith(("/etc/openstack-dashboard", "/etc/apache2")) for p in paths), paths

    class Ctx:
        active_profile = active

    Ctx.profile = profile
    calls = []
    monkeypatch.setattr(steps_openstack, "enable_and_start", lambda units: calls.append(("start", list(units))))
    monkeypatch.setattr(steps_dashboard, "systemctl", lambda *args, **kw: calls.append(args))
    steps_openstack.start_servers(Ctx())
    assert calls[0] == ("mask", "--now", "apache2") and "apache2" not in calls[1][1]


def test_a_switch_that_names_no_site_section_is_refused():
    data = _zed_data()
    next(s for s in data["services"] if s["name"] == "dashboard")["switch"] = "region"
    with pytest.raises(ConfigError, match=r"test\.yaml: services\[\d+\]\.switch: expected a site config section"):
        parse_profile(data, "test.yaml")


def test_site_defaults_set_the_guest_image_name_and_a_site_file_wins(tmp_path):
    from appliance.sitefile import load_site

    trixie = load_profile("trixie-epoxy")
    assert trixie.distro.release == "trixie" and trixie.openstack_release == "epoxy"
    assert load_site(None, trixie).image_name == "lxc_debian_13"
    assert load_site(None, load_profile("bookworm-zed")).image_name == "lxc_debian_12"
    site = tmp_path / "appliance.yaml"
    site.write_text("image_name: mine\n")
    assert load_site(site, trixie).image_name == "mine"
    site.write_text("region: RegionTwo\n")
    assert load_site(site, trixie).image_name == "lxc_debian_13"


@pytest.mark.parametrize("value, match", [
    ({"image_nam": "x"}, r"test\.yaml: site_defaults\.image_nam: unknown key"),
    ({"image_name": 13}, r"test\.yaml: site_defaults\.image_name: expected a string"),
    ([], r"test\.yaml: site_defaults: expected a mapping"),
])
def test_bad_site_defaults_are_refused(value, match):
    data = _zed_data()
    data["site_defaults"] = value
    with pytest.raises(ConfigError, match=match):
        parse_profile(data, "test.yaml")


@pytest.mark.parametrize("bind, expected", [("management", "10.254.0.10"), ("any", "10.254.0.10"),
                                            ("loopback", "127.0.0.1")])
def test_the_agent_asks_rabbitmq_where_its_amqp_listener_is_bound(bind, expected):
    from appliance.agent import steps_infra

    data = _zed_data()
    rabbitmq = next(s for s in data["services"] if s["name"] == "rabbitmq")
    rabbitmq["ports"] = [{"port": 5672, "bind": bind}, *rabbitmq["ports"][1:]]

    class Ctx:
        profile = parse_profile(data, "test.yaml")

        class facts:
            management_ip = "10.254.0.10"

    assert steps_infra.amqp_address(Ctx()) == expected


@pytest.mark.parametrize("name", available_profiles())
def test_the_image_copy_is_complete_and_reads_the_same(name):
    # What the build writes as /usr/share/appliance/profile.yaml: parse_profile reads it alone.
    text = resolved_profile_yaml(name)
    data = yaml.safe_load(text)
    assert not {"base", "drop", "standalone"} & set(data)
    assert parse_profile(data, "/usr/share/appliance/profile.yaml") == load_profile(name)


def test_first_boot_neither_starts_nor_expects_the_join_service(monkeypatch):
    """Declared (its unit, its port, its unit file) but on demand: `appliance add-node`
    starts it, nothing at boot does, and status and the smoke do not wait for it."""
    from appliance import cli
    from appliance.agent import steps_dashboard, steps_openstack
    from appliance.render import HostFacts, render_files
    from appliance.sitefile import load_site

    epoxy = load_profile("trixie-epoxy")
    join = epoxy.service("join")
    assert join.on_demand and join.units == ("appliance-join",) and [(p.port, p.bind) for p in join.ports] == [
        (9777, "management")]
    assert "appliance-join" not in epoxy.units() and not join.ports[0].nodes

    class Ctx:
        profile = active_profile = epoxy

    started = []
    monkeypatch.setattr(steps_openstack, "enable_and_start", lambda units: started.extend(units))
    monkeypatch.setattr(steps_openstack, "wait_for", lambda *args, **kw: None)
    monkeypatch.setattr(steps_dashboard, "systemctl", lambda *args, **kw: started.append(args))
    steps_openstack.start_servers(Ctx())
    steps_openstack.start_gated(Ctx())
    assert "nova-api" in started and "appliance-join" not in started

    site = load_site(None, epoxy)
    secrets = {n: "x" * 16 for n in credentials.secret_names(epoxy)}
    unit = next(f.content for f in render_files(epoxy, site, HostFacts.from_site(site), secrets)
                if f.spec.path == "/etc/systemd/system/appliance-join.service")
    # add-node enables it (a reboot keeps an invitation served); nothing else does.
    assert "\n[Install]\nWantedBy=multi-user.target" in unit and "port 9777" in unit
    command = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
    assert command.startswith("/usr/bin/python3 -m appliance ")
    # The verb the unit runs is one the appliance command has.
    with pytest.raises(SystemExit) as helped:
        cli.main([*command.split()[3:], "--help"])
    assert helped.value.code == 0
