"""The shipped profiles cannot drift apart unnoticed, and the image's copy of each is complete.

Two profiles of one distribution family that are not standalone must share a lineage (one a
delta of the other, or both of a common base). Whatever one has and the other lacks (a
setting, a top-level field, a service, a unit, a file) is either an addition of a delta,
visible there, or a drop that a delta states with its reason. A full copy of a profile, the
way trixie-epoxy once was one of bookworm-zed that lost the power-off of instances, fails here.
"""

import itertools

import pytest

from appliance.profile_delta import address_text, drop_reasons, profile_chain, resolve_profile_file
from appliance.schema import load_yaml_mapping
from pipeline.profiles import available_profiles, load_profile, profile_path


def items(data: dict) -> set[tuple]:
    """What a resolved profile has, by the addresses ``drop`` uses."""
    found = {(key,) for key in data if key not in ("name", "description", "openstack_release")}
    found |= {("settings", key) for key in data.get("settings", {})}
    for svc in data.get("services", []):
        name = svc["name"]
        found.add(("services", name))
        found |= {("services", name, "units", unit) for unit in svc.get("units", [])}
        found |= {("services", name, "files", f["path"]) for f in svc.get("files", [])}
    return found


def lineage(name: str) -> list[str]:
    return [path.stem for path in profile_chain(profile_path(name))]


def stated_drops(chain: list[str]) -> dict[tuple, str]:
    """The drops the files of ``chain`` state, with their reasons."""
    reasons: dict[tuple, str] = {}
    for name in chain:
        reasons.update(drop_reasons(load_yaml_mapping(profile_path(name)), name))
    return reasons


def common_base(one: str, other: str) -> str | None:
    theirs = lineage(other)
    return next((name for name in lineage(one) if name in theirs), None)


def unexplained(one: str, other: str) -> list[str]:
    """What ``other`` has and ``one`` lacks with no drop of ``one``'s lineage to say why."""
    mine, theirs = lineage(one), lineage(other)
    common = common_base(one, other)
    if common is None and any(load_yaml_mapping(profile_path(chain[-1])).get("standalone") for chain in (mine, theirs)):
        return []
    resolved = {name: resolve_profile_file(profile_path(name)) for name in {one, other, common} - {None}}
    ancestor = items(resolved[common]) if common else None
    reasons = stated_drops(mine[:mine.index(common)] if common else [])
    missing = []
    for item in sorted(items(resolved[other]) - items(resolved[one]), key=str):
        if ancestor is not None and item not in ancestor:
            continue  # an addition of other's lineage, visible in its delta
        if any(item[:n] in reasons for n in range(1, len(item) + 1)):
            continue
        missing.append(address_text(item))
    return missing


def family(name: str) -> str:
    return load_profile(name).distro.family


PAIRS = [(a, b) for a, b in itertools.permutations(available_profiles(), 2) if family(a) == family(b)]


def test_there_is_a_pair_to_compare():
    assert ("trixie-epoxy", "bookworm-zed") in PAIRS


@pytest.mark.parametrize("one, other", PAIRS)
def test_what_a_profile_lacks_is_a_stated_drop(one, other):
    missing = unexplained(one, other)
    fix = (f"state each in {one}'s drop: with why, or keep it" if common_base(one, other) else
           "neither is a delta of the other: write one with base: and drop: with why what it lacks")
    assert not missing, f"{one} lacks what {other} has, with no reason: {', '.join(missing)}; {fix}"


def test_trixie_epoxy_is_a_delta_of_bookworm_zed():
    assert lineage("trixie-epoxy") == ["trixie-epoxy", "bookworm-zed"]
    trixie = load_profile("trixie-epoxy")
    assert trixie.distro.release == "trixie" and trixie.openstack_release == "epoxy"
    assert trixie.site_defaults == {"image_name": "lxc_debian_13"}
    # The power-off of instances comes from the base.
    nova = trixie.service("nova")
    assert "libvirt-guests" in nova.units
    assert {"/etc/default/libvirt-guests", "/etc/systemd/system/libvirt-guests.service.d/appliance.conf",
            "/etc/systemd/system/nova-compute.service.d/appliance.conf"} <= {f.path for f in nova.files}
    assert {"libvirt_uri", "guest_shutdown_parallel", "guest_shutdown_timeout"} <= set(trixie.settings)
    policy = next(f for f in nova.files if f.path == "/etc/nova/policy.yaml")
    assert policy.template == "etc/nova/policy.yaml.epoxy.j2"


def test_xenial_newton_stays_standalone():
    data = load_yaml_mapping(profile_path("xenial-newton"))
    assert "base" not in data and data["standalone"]

