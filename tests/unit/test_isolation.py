"""Tenant isolation as data and pure logic: the instances' id map, its reservation in
/etc/subuid and /etc/subgid, Nova's rendered options, the ownership shift, the quotas."""

import os
import stat
import sys
import types

import pytest
import yaml

from appliance.agent import steps_cloud, steps_host
from appliance.errors import ApplianceError, ConfigError
from appliance.profiles import IdMap, TenantQuota, parse_profile
from appliance.render import REPO_OVERLAYS, render_site
from pipeline.profiles import PROFILE_DIR, load_profile

SHIFT_TEMPLATE = REPO_OVERLAYS / "usr/lib/python3/dist-packages/nova/privsep/idmapshift.zed.py.j2"


def _zed_data():
    return yaml.safe_load((PROFILE_DIR / "bookworm-zed.yaml").read_text())


@pytest.mark.parametrize("name", ["bookworm-zed", "xenial-newton"])
def test_both_profiles_map_instances_into_a_dedicated_range(name, tmp_path):
    profile = load_profile(name)
    assert profile.instance_id_map == IdMap(host_start=100000, count=65536)
    render_site(load_profile(name), None, tmp_path)
    nova = (tmp_path / "etc/nova/nova.conf").read_text()
    libvirt = nova.split("[libvirt]", 1)[1].split("\n[", 1)[0]
    assert "uid_maps = 0:100000:65536" in libvirt and "gid_maps = 0:100000:65536" in libvirt


def test_without_a_map_nova_gets_no_id_maps(tmp_path, monkeypatch):
    data = _zed_data()
    del data["instance_id_map"]
    profile = parse_profile(data, "test.yaml")
    render_site(profile, None, tmp_path)
    assert "uid_maps" not in (tmp_path / "etc/nova/nova.conf").read_text()


@pytest.mark.parametrize("key, value, error", [
    ("instance_id_map", {"host_start": 0}, r"instance_id_map\.host_start: expected at least 65536"),
    ("instance_id_map", {"host_start": 1000}, r"instance_id_map\.host_start: expected at least 65536"),
    ("instance_id_map", {"host_start": 100000, "count": 1000}, r"instance_id_map\.count: expected at least 65536"),
    ("instance_id_map", {"host_start": 2**32 - 65536}, r"instance_id_map\.count: expected host_start \+ count"),
    ("instance_id_map", {"host_start": "100000"}, r"instance_id_map\.host_start: expected an integer"),
    ("instance_id_map", {"count": 65536}, r"instance_id_map\.host_start: required key is missing"),
    ("tenant_quota", {"reserved_ram_mb": -1}, r"tenant_quota\.reserved_ram_mb: expected 0 or more"),
    ("tenant_quota", {"vcpus_per_cpu": 0}, r"tenant_quota\.vcpus_per_cpu: expected 1 or more"),
    ("tenant_quota", {"cores": 4}, r"tenant_quota\.cores: unknown key"),
])
def test_bad_isolation_data_is_refused_naming_the_field(key, value, error):
    data = _zed_data()
    data[key] = value
    with pytest.raises(ConfigError, match=error):
        parse_profile(data, "test.yaml")


# -- /etc/subuid and /etc/subgid ---------------------------------------------------------

class _Ctx:
    profile = load_profile("bookworm-zed")


def _etc(tmp_path, passwd="root:x:0:0::/root:/bin/sh\nnova:x:64060:64060::/var/lib/nova:/bin/sh\n",
         group="root:x:0:\n", subuid=None, subgid=None):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)
    for name, text in (("subuid", subuid), ("subgid", subgid)):
        if text is not None:
            (etc / name).write_text(text)
    return etc


def test_range_is_reserved_once(tmp_path):
    etc = _etc(tmp_path, subuid="alice:165536:65536\n")
    steps_host.reserve_instance_ids(_Ctx(), etc)
    steps_host.reserve_instance_ids(_Ctx(), etc)
    assert (etc / "subuid").read_text() == "alice:165536:65536\nroot:100000:65536\n"
    assert (etc / "subgid").read_text() == "root:100000:65536\n"


@pytest.mark.parametrize("files, error", [
    ({"passwd": "root:x:0:0::/root:/bin/sh\nbob:x:100500:100:::\n"}, r"passwd: bob has id 100500, inside"),
    ({"group": "root:x:0:\nteam:x:165535:\n"}, r"group: team has id 165535, inside"),
    ({"subuid": "carol:100000:65536\n"}, r"subuid: 'carol:100000:65536' overlaps"),
    ({"subgid": "dave:99999:2\n"}, r"subgid: 'dave:99999:2' overlaps"),
])
def test_a_clash_is_refused_and_nothing_written(tmp_path, files, error):
    etc = _etc(tmp_path, **files)
    before = {p.name: p.read_text() for p in etc.iterdir()}
    with pytest.raises(ApplianceError, match=error):
        steps_host.reserve_instance_ids(_Ctx(), etc)
    assert {p.name: p.read_text() for p in etc.iterdir()} == before


def test_ranges_next_to_it_are_fine(tmp_path):
    etc = _etc(tmp_path, subuid="a:34464:65536\nb:165536:65536\n",
               passwd="root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534:::\n")
    steps_host.reserve_instance_ids(_Ctx(), etc)
    assert "root:100000:65536" in (etc / "subuid").read_text()


# -- the ownership shift (the template replacing Zed's nova/privsep/idmapshift.py) -------

@pytest.fixture
def shift_module(monkeypatch):
    """The template's code with nova.privsep stubbed (the entrypoint runs in-process)."""
    privsep = types.ModuleType("nova.privsep")
    privsep.sys_admin_pctxt = types.SimpleNamespace(entrypoint=lambda f: f)
    nova = types.ModuleType("nova")
    nova.privsep = privsep
    monkeypatch.setitem(sys.modules, "nova", nova)
    monkeypatch.setitem(sys.modules, "nova.privsep", privsep)
    module = types.ModuleType("idmapshift")
    exec(compile(SHIFT_TEMPLATE.read_text(), str(SHIFT_TEMPLATE), "exec"), module.__dict__)
    return module


def _idmap(start, target, count):
    # What Nova passes: LibvirtConfigGuestUIDMap/GIDMap objects, not tuples.
    return types.SimpleNamespace(start=start, target=target, count=count)


def test_ids_map_into_the_range_and_twice_is_once(shift_module):
    lookup = shift_module._mapper([(0, 100000, 65536)])
    assert [lookup(i) for i in (0, 998, 65534, 65535)] == [100000, 100998, 165534, 165535]
    assert [lookup(i) for i in (100000, 165535)] == [100000, 165535]  # already shifted: kept
    assert lookup(65536) == lookup(200000) == shift_module.NOBODY_ID  # outside every range


def test_only_plain_triples_cross_into_privsep(shift_module, monkeypatch):
    seen = []
    monkeypatch.setattr(shift_module, "_shift_tree", lambda *args: seen.append(args))
    shift_module.shift("/rootfs", [_idmap(0, 100000, 65536)], [_idmap(0, 100000, 65536)])
    assert seen == [("/rootfs", [(0, 100000, 65536)], [(0, 100000, 65536)])]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_tree_is_shifted_keeping_setuid_bits(shift_module, tmp_path):
    tool = tmp_path / "usr/bin/su"
    tool.parent.mkdir(parents=True)
    tool.write_text("")
    os.chown(tool, 0, 0)
    tool.chmod(0o4755)
    (tmp_path / "link").symlink_to("usr/bin/su")
    os.lchown(tmp_path / "link", 998, 998)
    maps = [(0, 100000, 65536)]
    assert shift_module._shift_tree(str(tmp_path), maps, maps) == 5  # the root, usr, bin, su, link
    st = os.lstat(tool)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (100000, 100000, 0o4755)
    assert os.lstat(tmp_path / "link").st_uid == 100998
    assert shift_module._shift_tree(str(tmp_path), maps, maps) == 0


# -- quotas ------------------------------------------------------------------------------

@pytest.mark.parametrize("ram_mb, cpus, expected", [
    (23898, 2, {"instances": 8, "cores": 8, "ram": 19712}),   # this machine
    (65536, 16, {"instances": 64, "cores": 64, "ram": 61440}),
    (8192, 4, {"instances": 16, "cores": 16, "ram": 4096}),
    (4096, 1, {"instances": 4, "cores": 4, "ram": 2048}),      # smaller than the reserve: two default instances
    (5888, 2, {"instances": 8, "cores": 8, "ram": 2048}),
])
def test_quota_follows_the_host(ram_mb, cpus, expected):
    assert steps_cloud.quota_for_host(TenantQuota(), ram_mb, cpus) == expected


def test_host_size_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24471780 kB\nMemFree:        1 kB\n")
    ram, cpus = steps_cloud.host_size(meminfo)
    assert ram == 23898 and cpus == len(os.sched_getaffinity(0))
    meminfo.write_text("MemFree: 1 kB\n")
    with pytest.raises(ApplianceError, match="no MemTotal line"):
        steps_cloud.host_size(meminfo)


# -- the build's check of the policy file's rule names ------------------------------------

def test_policy_rule_names_are_checked_against_the_service(tmp_path):
    """A misspelt rule in policy.yaml would leave its action allowed: the build's check
    (the snippet it runs in the image with the service's own list_rules) names it."""
    import subprocess

    from pipeline.imagebuild.configcheck import _UNKNOWN_RULES

    (tmp_path / "fakepolicies.py").write_text(
        "class R:\n    def __init__(self, n): self.name = n\n"
        "def list_rules(): return [R('os_compute_api:os-rescue'), R('os_compute_api:os-unrescue')]\n")
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text('"os_compute_api:os-rescue": "!"\n')
    bad.write_text('"os_compute_api:os-rescue": "!"\n"os_compute_api:os-rescuee": "!"\n')

    def check(path):
        return subprocess.run([sys.executable, "-c", _UNKNOWN_RULES, "fakepolicies", str(path)], cwd=tmp_path,
                              capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}).stdout

    assert check(good) == ""
    assert check(bad) == "ERROR: unknown policy rule os_compute_api:os-rescuee\n"


@pytest.mark.parametrize("variant", ["zed", "epoxy"])
def test_shipped_policy_refuses_only_and_parses(variant):
    text = (REPO_OVERLAYS / f"etc/nova/policy.yaml.{variant}.j2").read_text()
    rules = yaml.safe_load(text)
    assert set(rules.values()) == {"!"}
    assert {"os_compute_api:os-suspend-server:suspend", "os_compute_api:os-rescue", "os_compute_api:os-shelve:shelve",
            "os_compute_api:servers:create_image", "os_compute_api:os-remote-consoles"} <= set(rules)
    assert not {"os_compute_api:servers:stop", "os_compute_api:servers:reboot", "os_compute_api:servers:rebuild",
                "os_compute_api:os-pause-server:pause", "os_compute_api:os-lock-server:lock",
                "os_compute_api:os-console-output"} & set(rules)


def test_epoxy_policy_refuses_what_zed_refuses_and_the_2025_1_additions():
    zed = yaml.safe_load((REPO_OVERLAYS / "etc/nova/policy.yaml.zed.j2").read_text())
    epoxy = yaml.safe_load((REPO_OVERLAYS / "etc/nova/policy.yaml.epoxy.j2").read_text())
    assert set(epoxy) - set(zed) == {"os_compute_api:os-migrate-server:migrate:host",
                                     "os_compute_api:os-server-shares:create", "os_compute_api:os-server-shares:delete"}
    # openstackclient 7 sends every image boot as a block device mapping, which Nova checks
    # against this rule: refusing it would refuse `openstack server create` itself.
    assert set(zed) - set(epoxy) == {"os_compute_api:servers:create:attach_volume"}
