"""The external network: site defaults, the rendered agent/ML2 settings per mode, and the
pure parts of the host-side setup (the NAT rule it owns, finding the uplink)."""

import pytest

from appliance.agent import external
from appliance.credentials import placeholder_secrets
from appliance.errors import ApplianceError
from appliance.render import HostFacts, render_files
from appliance.schema import from_mapping
from appliance.site import SiteConfig
from pipeline.profiles import load_profile

from .ini import parse_ini


def site_of(data: dict) -> SiteConfig:
    return from_mapping(SiteConfig, data, "appliance.yaml")


def rendered(site: SiteConfig, path: str) -> dict:
    profile = load_profile("bookworm-zed")
    files = render_files(profile, site, HostFacts.from_site(site), placeholder_secrets(profile))
    return parse_ini(next(f.content for f in files if f.spec.path == path), merge_duplicates=False)


def test_defaults_are_a_host_bridge_with_the_rest_of_the_range_floating():
    ext = SiteConfig().external
    assert (ext.mode, ext.name, ext.cidr, ext.gateway_ip()) == ("host", "external", "10.20.20.0/24", "10.20.20.1")
    pool = ext.floating_pool()
    assert (pool.start, pool.end) == ("10.20.20.2", "10.20.20.254")


AGENT_INI = "/etc/neutron/plugins/ml2/linuxbridge_agent.ini"
ML2_INI = "/etc/neutron/plugins/ml2/ml2_conf.ini"


@pytest.mark.parametrize("data,mappings,bridges,flat", [
    ({}, None, "external:br-external", "provider,external"),
    ({"external": {"mode": "provider", "interface": "eth1", "cidr": "198.51.100.0/24"}},
     "external:eth1", None, "provider,external"),
    ({"provider_interface": "eth2", "external": {"mode": "provider", "interface": "eth1", "cidr": "198.51.100.0/24"}},
     "provider:eth2,external:eth1", None, "provider,external"),
    ({"external": {"mode": "none"}}, None, None, "provider"),
    ({"provider_interface": "eth2", "external": {"mode": "none"}}, "provider:eth2", None, "provider"),
], ids=["host", "provider", "provider+provider_interface", "none", "none+provider_interface"])
def test_agent_and_ml2_settings_per_mode(data, mappings, bridges, flat):
    site = site_of(data)
    agent = rendered(site, AGENT_INI)["linux_bridge"]
    assert agent.get("physical_interface_mappings") == mappings
    assert agent.get("bridge_mappings") == bridges
    assert rendered(site, ML2_INI)["ml2_type_flat"]["flat_networks"] == flat


def test_nat_rule_masquerades_only_the_external_range_out_of_the_uplink():
    rule = external.nat_rule("10.20.20.0/24", "eth0")
    assert rule[:4] == ["-s", "10.20.20.0/24", "-o", "eth0"]
    assert rule[-2:] == ["-j", "MASQUERADE"]
    assert external.RULE_COMMENT in rule


def test_owned_rules_finds_ours_in_iptables_save_output():
    ours = external.nat_rule("10.20.20.0/24", "mgmt0")
    saved = "\n".join([
        "-P POSTROUTING ACCEPT",
        "-A POSTROUTING -j neutron-postrouting-bottom",
        "-A POSTROUTING " + " ".join(ours),
        '-A POSTROUTING -s 10.0.3.0/24 ! -d 10.0.3.0/24 -j MASQUERADE',
        "-A POSTROUTING " + " ".join(ours),
    ])
    assert external.owned_rules(saved) == [ours, ours]


def test_interface_of_names_the_holder_or_fails_clearly():
    links = [{"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}]},
             {"ifname": "mgmt0", "addr_info": [{"local": "10.254.0.10"}]}]
    assert external.interface_of("10.254.0.10", links) == "mgmt0"
    with pytest.raises(ApplianceError, match="no interface holds the management address 10.9.9.9"):
        external.interface_of("10.9.9.9", links)


def test_the_harness_lan_site_is_a_valid_provider_site(tmp_path):
    from appliance.sitefile import load_site
    from pipeline.harness import uplink

    path = tmp_path / "appliance.yaml"
    path.write_text(uplink.lan_site())
    ext = load_site(path, load_profile("bookworm-zed")).external
    assert (ext.mode, ext.interface, ext.cidr, ext.gateway_ip()) == ("provider", uplink.LAN_INTERFACE,
                                                                      uplink.LAN_CIDR, uplink.LAN_ROUTER)
    assert (ext.floating_pool().start, ext.floating_pool().end) == uplink.LAN_FLOATING_RANGE
