"""Network backends: one module per ML2 mechanism behind the same functions; the OVN
chassis' datapath choice and settings."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from appliance.agent.context import AgentContext, Paths
from appliance.agent.facts import save_facts
from appliance.agent.netbackend import BACKENDS, backend_of, ovn
from appliance.errors import ConfigError
from appliance.profiles import Network, parse_profile
from appliance.render import HostFacts
from pipeline.profiles import PROFILE_DIR, available_profiles, load_profile

INTERFACE = ("choose_datapath", "host_bridge", "chassis_steps", "final_steps")


def test_every_backend_offers_the_same_functions():
    assert set(BACKENDS) == set(Network.BACKENDS)
    for name, module in BACKENDS.items():
        missing = [f for f in INTERFACE if not callable(getattr(module, f, None))]
        assert not missing, f"backend {name} lacks {missing}"


@pytest.mark.parametrize("name", available_profiles())
def test_every_shipped_profile_names_a_backend_and_its_agents(name):
    profile = load_profile(name)
    assert backend_of(profile) is BACKENDS[profile.network.backend]
    assert profile.network.agents, f"{name}: network.agents is empty"


def test_the_default_release_runs_ovn_and_the_reference_releases_linux_bridge():
    assert load_profile("trixie-epoxy").network.backend == "ovn"
    assert {load_profile(n).network.backend for n in ("bookworm-zed", "xenial-newton")} == {"linuxbridge"}


def test_an_unknown_backend_is_refused_naming_the_field():
    data = yaml.safe_load((PROFILE_DIR / "bookworm-zed.yaml").read_text())
    data["network"]["backend"] = "openvswitch"
    with pytest.raises(ConfigError, match=r"test.yaml: network.backend: expected one of linuxbridge, ovn"):
        parse_profile(data, "test.yaml")


@pytest.mark.parametrize("loaded, modprobe_ok, appears, expected", [
    (True, False, False, "system"),    # module already loaded (a server that uses OVS already)
    (False, True, True, "system"),     # loads on demand (a VM with Debian's kernel)
    (False, False, False, "netdev"),   # no module (a container on a kernel without it)
    (False, True, False, "netdev"),    # modprobe says yes, yet no module (a stand-in modprobe)
])
def test_the_datapath_is_the_kernels_only_where_its_module_is_there(tmp_path, loaded, modprobe_ok, appears,
                                                                     expected):
    module = tmp_path / "openvswitch"
    if loaded:
        module.mkdir()

    def modprobe():
        if appears:
            module.mkdir()
        return modprobe_ok

    assert ovn.choose_datapath(module, modprobe) == expected


def _ovn_ctx(tmp_path, site_yaml: str, datapath: str = "netdev") -> AgentContext:
    paths = Paths(config_dir=tmp_path)
    paths.site.parent.mkdir(parents=True, exist_ok=True)
    paths.site.write_text(site_yaml)
    facts = HostFacts(hostname="cloud1", management_ip="10.254.0.10", overlay_ip="10.254.0.10", datapath=datapath)
    save_facts(facts, paths.facts)
    return AgentContext(paths=paths, profile=load_profile("trixie-epoxy"))


@pytest.mark.parametrize("site_yaml, datapath, mappings", [
    ("{}\n", "netdev", "external:br-external"),
    ("external: {mode: host, bridge: br-ex}\n", "system", "external:br-ex"),
    ("external: {mode: none}\n", "netdev", None),
])
def test_the_chassis_is_named_after_the_host_with_its_datapath_and_mappings(tmp_path, site_yaml, datapath,
                                                                              mappings):
    settings = ovn.chassis_settings(_ovn_ctx(tmp_path, site_yaml, datapath))
    assert settings["system-id"] == settings["hostname"] == "cloud1"
    assert settings["ovn-bridge-datapath-type"] == datapath
    assert settings["ovn-encap-ip"] == "10.254.0.10"
    assert settings["ovn-remote"] == "tcp:127.0.0.1:6642"
    assert settings["ovn-cms-options"] == "enable-chassis-as-gw"
    assert settings.get("ovn-bridge-mappings") == mappings


def test_only_the_linux_bridge_backend_checks_dhcp_servers_at_the_end(tmp_path):
    ctx = _ovn_ctx(tmp_path, "{}\n")
    assert [s.name for s in backend_of(ctx.profile).final_steps(ctx)] == []
    assert [s.name for s in backend_of(ctx.profile).chassis_steps(ctx)] == ["chassis"]
    lb = dataclasses.replace(ctx, profile=load_profile("bookworm-zed"))
    assert [s.name for s in backend_of(lb.profile).final_steps(lb)] == ["dhcp"]
    assert backend_of(lb.profile).chassis_steps(lb) == []


@pytest.mark.parametrize("profile, site_yaml, error", [
    ("trixie-epoxy", "provider_interface: eth1\n",
     r"site.yaml: provider_interface: not offered with ML2/ovn \(profile trixie-epoxy\); put the LAN on "
     r"external.interface with external.mode provider instead"),
    ("trixie-epoxy", "external: {mode: provider, interface: eth1, cidr: 198.51.100.0/24}\n", None),
    ("bookworm-zed", "provider_interface: eth1\n", None),
])
def test_a_site_field_the_backend_does_not_offer_is_refused_in_one_line(tmp_path, profile, site_yaml, error):
    from appliance.sitefile import load_site

    site = tmp_path / "site.yaml"
    site.write_text(site_yaml)
    if error is None:
        load_site(site, load_profile(profile))
    else:
        with pytest.raises(ConfigError, match=error):
            load_site(site, load_profile(profile))
