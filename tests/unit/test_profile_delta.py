"""A profile written as a base plus a delta: the merge, the drops and their refusals, the chain
of base files."""

import copy

import pytest

from appliance.errors import ConfigError
from appliance.profile_delta import apply_delta, drop_reasons, profile_chain, resolve_profile_file
from appliance.profiles import load_profile_file, parse_profile

BASE = {
    "name": "base", "description": "the base", "openstack_release": "zed",
    "distro": {"family": "debian", "release": "bookworm", "components": ["main"]},
    "settings": {"a": 1, "b": {"x": 1, "y": 2}, "keep": True},
    "rpc_gate": {"queues": ["q1"], "units": ["u1"]},
    "services": [
        {"name": "s1", "units": ["u1", "u2"], "ports": [{"port": 1}],
         "files": [{"path": "/etc/f1", "template": "t1"}, {"path": "/etc/f2", "template": "t2"}]},
        {"name": "s2", "packages": ["p"], "units": ["v1"]},
        {"name": "s3"},
    ],
}
OWN = {"name": "delta", "description": "the delta", "openstack_release": "epoxy"}


def services(b):
    return {svc["name"]: svc for svc in b["services"]}


# id, the delta's own keys (besides OWN), what that does to the base (None: nothing).
MERGES = [
    ("own keys only", {}, None),
    ("key merge, recursive", {"settings": {"a": 2, "b": {"y": 3}, "c": 4}},
     lambda b: b["settings"].update(a=2, b={"x": 1, "y": 3}, c=4)),
    ("scalar replace", {"distro": {"release": "trixie"}}, lambda b: b["distro"].update(release="trixie")),
    ("list replace", {"distro": {"components": ["main", "contrib"]}},
     lambda b: b["distro"].update(components=["main", "contrib"])),
    ("new top-level key", {"site_defaults": {"image_name": "x"}}, lambda b: b.update(site_defaults={"image_name": "x"})),
    ("service update: a given key replaces", {"services": [{"name": "s2", "packages": ["q", "r"]}]},
     lambda b: services(b)["s2"].update(packages=["q", "r"])),
    ("service update: new key", {"services": [{"name": "s3", "units": ["w"]}]},
     lambda b: services(b)["s3"].update(units=["w"])),
    ("file replaced by path, in place", {"services": [{"name": "s1", "files": [{"path": "/etc/f1", "template": "t9"}]}]},
     lambda b: services(b)["s1"].update(files=[{"path": "/etc/f1", "template": "t9"}, {"path": "/etc/f2", "template": "t2"}])),
    ("file appended", {"services": [{"name": "s1", "files": [{"path": "/etc/f3", "template": "t3"}]}]},
     lambda b: services(b)["s1"]["files"].append({"path": "/etc/f3", "template": "t3"})),
    ("service appended", {"services": [{"name": "s4", "units": ["z"]}]},
     lambda b: b["services"].append({"name": "s4", "units": ["z"]})),
    ("service inserted after another", {"services": [{"name": "s4", "after": "s1"}, {"name": "s5", "after": "s4"}]},
     lambda b: b["services"].__setitem__(slice(1, 1), [{"name": "s4"}, {"name": "s5"}])),
    ("drop a setting", {"drop": {"settings": {"keep": "why"}}}, lambda b: b["settings"].pop("keep")),
    ("drop a nested setting", {"drop": {"settings": {"b": {"x": "why"}}}}, lambda b: b["settings"]["b"].pop("x")),
    ("drop a top-level field", {"drop": {"rpc_gate": "why"}}, lambda b: b.pop("rpc_gate")),
    ("drop a service", {"drop": {"services": {"s2": "why"}}}, lambda b: b["services"].pop(1)),
    ("drop a file", {"drop": {"services": {"s1": {"files": {"/etc/f1": "why"}}}}},
     lambda b: services(b)["s1"]["files"].pop(0)),
    ("drop a unit", {"drop": {"services": {"s1": {"units": {"u2": "why"}}}}},
     lambda b: services(b)["s1"].update(units=["u1"])),
    ("drop a service's key", {"drop": {"services": {"s1": {"ports": "why"}}}}, lambda b: services(b)["s1"].pop("ports")),
    ("drop explains a list given anew", {"drop": {"services": {"s1": {"units": {"u2": "why"}}}},
                                         "services": [{"name": "s1", "units": ["u1", "u3"]}]},
     lambda b: services(b)["s1"].update(units=["u1", "u3"])),
]


@pytest.mark.parametrize("delta, edit", [row[1:] for row in MERGES], ids=[row[0] for row in MERGES])
def test_merge(delta, edit):
    base = copy.deepcopy(BASE)
    expected = copy.deepcopy(BASE)
    if edit:
        edit(expected)
    expected.update(OWN)
    assert apply_delta(base, {**OWN, "base": "base", **delta}, "delta.yaml", "base.yaml") == expected
    assert base == BASE  # the base is left as it was


# id, the delta's own keys (besides OWN), the error's field, its message.
REFUSALS = [
    ("drop a missing setting", {"drop": {"settings": {"nope": "why"}}},
     "drop.settings.nope", "base.yaml has no settings.nope to drop"),
    ("drop a missing service", {"drop": {"services": {"nope": "why"}}},
     "drop.services[nope]", r"base.yaml has no services\[nope\] to drop"),
    ("drop a missing file", {"drop": {"services": {"s1": {"files": {"/etc/nope": "why"}}}}},
     "drop.services[s1].files[/etc/nope]", r"base.yaml has no services\[s1\].files\[/etc/nope\] to drop"),
    ("drop a missing unit", {"drop": {"services": {"s2": {"units": {"u1": "why"}}}}},
     "drop.services[s2].units[u1]", "base.yaml has no"),
    ("drop in a missing service", {"drop": {"services": {"nope": {"units": {"u1": "why"}}}}},
     "drop.services[nope].units[u1]", "base.yaml has no"),
    ("drop without a reason", {"drop": {"settings": {"keep": ""}}}, "drop.settings.keep", "expected the reason"),
    ("drop with a null reason", {"drop": {"services": {"s3": None}}}, "drop.services[s3]", "expected the reason"),
    ("drop with an empty mapping", {"drop": {"settings": {}}}, "drop.settings", "expected the reason"),
    ("drop that is not a mapping", {"drop": ["settings"]}, "drop", "expected a mapping"),
    ("drop a never-inherited key", {"drop": {"description": "why"}}, "drop.description", "never inherited"),
    ("drop an item without name or path", {"drop": {"services": {"s1": {"ports": {"1": "why"}}}}},
     "drop.services[s1].ports.1", "no name or path"),
    ("drop and give back a setting", {"drop": {"settings": {"a": "why"}}, "settings": {"a": 5}},
     "drop.settings.a", "dropped from base.yaml but given again"),
    ("drop and give back a unit", {"drop": {"services": {"s1": {"units": {"u2": "why"}}}},
                                   "services": [{"name": "s1", "units": ["u2"]}]},
     "drop.services[s1].units[u2]", "given again"),
    ("drop and give back a service", {"drop": {"services": {"s3": "why"}}, "services": [{"name": "s3"}]},
     "drop.services[s3]", "given again"),
    ("null instead of a drop", {"settings": {"keep": None}}, "settings.keep", "null would remove"),
    ("null key of a service", {"services": [{"name": "s1", "units": None}]}, "services[0].units", "null would remove"),
    ("after an unknown service", {"services": [{"name": "s4", "after": "nope"}]}, "services[0].after", "no service 'nope'"),
    ("after on a base service", {"services": [{"name": "s1", "after": "s2"}]}, "services[0].after", "only places a new"),
    ("service without a name", {"services": [{"units": ["x"]}]}, "services[0].name", "required"),
    ("service named twice", {"services": [{"name": "s4"}, {"name": "s4"}]}, "services[1].name", "named twice"),
    ("file without a path", {"services": [{"name": "s1", "files": [{"template": "t"}]}]},
     r"services[0].files[0].path", "files merge by path"),
]


@pytest.mark.parametrize("delta, field, message", [row[1:] for row in REFUSALS], ids=[row[0] for row in REFUSALS])
def test_refusal(delta, field, message):
    with pytest.raises(ConfigError, match=message) as caught:
        apply_delta(copy.deepcopy(BASE), {**OWN, "base": "base", **delta}, "delta.yaml", "base.yaml")
    assert (caught.value.source, caught.value.field) == ("delta.yaml", field)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("key", ["name", "description", "openstack_release"])
def test_name_description_and_release_are_never_inherited(key):
    delta = {k: v for k, v in OWN.items() if k != key}
    with pytest.raises(ConfigError, match=f"delta.yaml: {key}: required in every profile file"):
        apply_delta(BASE, {**delta, "base": "base"}, "delta.yaml")


def test_drop_reasons_by_address():
    delta = {"drop": {"settings": {"a": "one"}, "services": {"s3": "two", "s1": {"files": {"/etc/f1": "three"}}}}}
    assert drop_reasons(delta, "x") == {("settings", "a"): "one", ("services", "s3"): "two",
                                        ("services", "s1", "files", "/etc/f1"): "three"}


# Files: the chain of bases.

def write(directory, name, text):
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def head(name):
    return f"name: {name}\ndescription: {name}\nopenstack_release: r\n"


def test_a_chain_of_bases(tmp_path):
    write(tmp_path, "a", head("a") + "settings: {x: 1, y: 1, z: 1}\n")
    write(tmp_path, "b", "base: a\n" + head("b") + "settings: {y: 2}\n")
    c = write(tmp_path, "c", "base: b\n" + head("c") + "settings: {z: 3}\ndrop: {settings: {x: gone}}\n")
    assert resolve_profile_file(c) == {"settings": {"y": 2, "z": 3}, "name": "c", "description": "c",
                                       "openstack_release": "r"}
    assert profile_chain(c) == [c, tmp_path / "b.yaml", tmp_path / "a.yaml"]


@pytest.mark.parametrize("files, start, message", [
    ({"a": "base: b\n", "b": "base: a\n"}, "a", "base profiles form a cycle: a.yaml -> b.yaml -> a.yaml"),
    ({"a": "base: a\n"}, "a", "base profiles form a cycle: a.yaml -> a.yaml"),
    ({"a": "base: b\n", "b": "base: c\n", "c": "base: b\n"}, "a", "cycle: a.yaml -> b.yaml -> c.yaml -> b.yaml"),
    ({"a": "base: nope\n"}, "a", r"base: no profile 'nope' \(no nope.yaml beside this file\)"),
    ({"a": "base: ../a\n"}, "a", "base: expected the name of a profile in the same directory"),
    ({"a": "base: b\nstandalone: why\n", "b": ""}, "a", "standalone: a profile with a base is not standalone"),
    ({"a": "drop: {settings: {x: why}}\n"}, "a", "drop: only a file that names its base profile may say this"),
    ({"a": "standalone: ''\n"}, "a", "standalone: expected the reason"),
])
def test_refusals_of_the_chain(tmp_path, files, start, message):
    for name, text in files.items():
        write(tmp_path, name, (text + head(name)) if text else "")
    with pytest.raises(ConfigError, match=message):
        resolve_profile_file(tmp_path / f"{start}.yaml")


def test_a_bad_base_is_reported_against_its_own_file(tmp_path, monkeypatch):
    bad = head("a") + "distro: {family: debian, release: x, dib_element: d, mirror: m}\n" \
        "identity: {public_port: 5000, admin_port: 5000}\nservices: [{name: s, pakages: []}]\n"
    write(tmp_path, "a", bad)
    b = write(tmp_path, "b", "base: a\n" + head("b"))
    with pytest.raises(ConfigError, match=r"a\.yaml: services\[0\]\.pakages: unknown key"):
        load_profile_file(b)


def test_a_resolved_mapping_has_no_file_keys():
    with pytest.raises(ConfigError, match="test.yaml: base: only a profile file may say this"):
        parse_profile({**BASE, "base": "x"}, "test.yaml")
