"""xenial-newton rendered with the reference's own values reproduces the reference chapter.

Every `cat <file>` listing in the chapter is parsed, and every setting in it must appear,
with the same value, in the file the appliance renders for that path.
"""

import re

import pytest
from project import FIXTURES

from appliance.credentials import placeholder_secrets
from appliance.render import HostFacts, render_files
from appliance.sitefile import load_site
from pipeline.profiles import load_profile
from unit.ini import parse_ini

CHAPTER = FIXTURES / "lxc-openstack-chapter.zh.md"
PROMPT = re.compile(r"^root@controller:[^#]*#\s?(.*)$")
CAT = re.compile(r"^cat\s+(\S+)")

# Chapter path -> the path the appliance writes, and how to compare.
LISTINGS = {
    "/etc/mysql/mariadb.conf.d/99-openstack.cnf": ("/etc/mysql/mariadb.conf.d/99-openstack.cnf", "ini"),
    "/etc/memcached.conf": ("/etc/memcached.conf", "lines"),
    "/etc/keystone/keystone.conf": ("/etc/keystone/keystone.conf", "ini"),
    # The chapter adds one line to Apache's main file; the appliance keeps that file as
    # packaged and adds the line as a conf-enabled snippet.
    "/etc/apache2/apache2.conf": ("/etc/apache2/conf-enabled/servername.conf", "lines"),
    "/etc/keystone/keystone-paste.ini": ("/etc/keystone/keystone-paste.ini", "ini"),
    "rc.admin": ("/root/rc.admin", "lines"),
    "rc.lxc": ("/root/rc.lxc", "lines"),
    "/etc/glance/glance-api.conf": ("/etc/glance/glance-api.conf", "ini"),
    "/etc/glance/glance-registry.conf": ("/etc/glance/glance-registry.conf", "ini"),
    "/etc/nova/nova.conf": ("/etc/nova/nova.conf", "ini"),
    "/etc/nova/nova-compute.conf": ("/etc/nova/nova-compute.conf", "ini"),
    "/etc/neutron/neutron.conf": ("/etc/neutron/neutron.conf", "ini"),
    "/etc/neutron/plugins/ml2/ml2_conf.ini": ("/etc/neutron/plugins/ml2/ml2_conf.ini", "ini"),
    "/etc/neutron/plugins/ml2/linuxbridge_agent.ini": ("/etc/neutron/plugins/ml2/linuxbridge_agent.ini", "ini"),
    "/etc/neutron/l3_agent.ini": ("/etc/neutron/l3_agent.ini", "ini"),
    "/etc/neutron/dhcp_agent.ini": ("/etc/neutron/dhcp_agent.ini", "ini"),
    "/etc/neutron/metadata_agent.ini": ("/etc/neutron/metadata_agent.ini", "ini"),
}
# Listings of files Nova writes per instance, not the appliance.
NOT_APPLIANCE_FILES = {"libvirt.xml"}

# Where the chapter is wrong and the appliance deliberately differs:
# (path, section, key) -> (the chapter's value, the appliance's value).
ERRATA = {
    # The chapter left the install guide's placeholder in glance-registry's database URL;
    # with it glance-registry could not connect. The appliance uses the glance DB password.
    ("/etc/glance/glance-registry.conf", "database", "connection"): (
        "mysql+pymysql://glance:GLANCE_DBPASS@controller/glance",
        "mysql+pymysql://glance:lxcpassword@controller/glance",
    ),
}


def chapter_listings() -> dict[str, list[list[str]]]:
    """Map each listed path to its listings (in chapter order) as lists of lines."""
    listings: dict[str, list[list[str]]] = {}
    current = None
    in_code = False
    for raw in CHAPTER.read_text(encoding="utf-8").splitlines():
        if raw.startswith("```"):
            in_code = not in_code
            current = None
            continue
        if not in_code:
            continue
        prompt = PROMPT.match(raw.strip())
        if prompt:
            current = None
            cat = CAT.match(prompt.group(1))
            if cat:
                path = cat.group(1)
                key = path.rsplit("/", 1)[-1] if path.endswith("libvirt.xml") else path
                current = []
                listings.setdefault(key, []).append(current)
            continue
        if current is not None:
            current.append(raw.strip())
    return listings


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    profile = load_profile("xenial-newton")
    site = load_site(FIXTURES / "seed-site.yaml", profile)
    secrets = {**placeholder_secrets(profile), **site.secrets}
    files = render_files(profile, site, HostFacts.from_site(site), secrets)
    return {f.spec.path: f.content for f in files}


def test_every_chapter_listing_is_accounted_for():
    listed = set(chapter_listings())
    assert listed == set(LISTINGS) | NOT_APPLIANCE_FILES


def test_nova_conf_final_listing_is_the_complete_one():
    nova = chapter_listings()["/etc/nova/nova.conf"]
    assert len(nova) == 3
    assert "[neutron]" in nova[-1] and "[neutron]" not in nova[0]


@pytest.mark.parametrize("chapter_path", sorted(LISTINGS))
def test_rendered_file_has_every_setting_of_the_listing(chapter_path, rendered):
    target, kind = LISTINGS[chapter_path]
    listing = chapter_listings()[chapter_path][-1]
    assert target in rendered, f"the profile renders no {target}"
    content = rendered[target]
    if kind == "lines":
        have = {line.strip() for line in content.splitlines() if line.strip() and not line.startswith("#")}
        want = {line for line in listing if line and line != "..."}
        assert want <= have, f"missing from {target}: {sorted(want - have)}"
        return
    expected = parse_ini("\n".join(listing), merge_duplicates=True)
    actual = parse_ini(content, merge_duplicates=False)
    assert list(expected) == [s for s in actual if s in expected], f"{target}: sections out of order"
    for section, options in expected.items():
        assert section in actual, f"{target}: section [{section}] missing"
        for key, value in options.items():
            erratum = ERRATA.get((target, section, key))
            if erratum:
                assert value == erratum[0], "the chapter changed; revisit the erratum"
                value = erratum[1]
            assert key in actual[section], f"{target}: [{section}] {key} missing"
            assert actual[section][key] == value, f"{target}: [{section}] {key}"


def test_errata_point_at_real_listings():
    listings = chapter_listings()
    for (target, section, key), (chapter_value, _) in ERRATA.items():
        chapter_path = next(p for p, (t, _) in LISTINGS.items() if t == target)
        parsed = parse_ini("\n".join(listings[chapter_path][-1]), merge_duplicates=True)
        assert parsed[section][key] == chapter_value
