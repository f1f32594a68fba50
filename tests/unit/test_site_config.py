"""Site config validation: each bad input gives one line naming the field, exit != 0,
and nothing is written."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from project import ROOT

from appliance.cluster.token import JoinToken, new_secret
from appliance.errors import ConfigError
from appliance.site import SiteConfig
from appliance.sitefile import load_site
from pipeline.profiles import load_profile

# `invoke` from this environment: ./inv would first (re)install .venv when pyproject changed.
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]

TOKEN = JoinToken(name="c2", host="10.254.0.10", port=9777, expires=2_000_000_000, ca_sha256="a" * 64,
                  secret=new_secret()).text()
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB9bVfq1V2Hk8sQ1m2kGq1iC0vXx8Zy1h7Q0T1m3mQ0c operator@desk"

BAD_SITES = [
    ("malformed YAML", "network: [unclosed\n", "malformed YAML"),
    ("not a mapping", "- just\n- a list\n", "expected a mapping"),
    ("unknown key", "hostnme: controller\n", "hostnme: unknown key"),
    ("unknown nested key", "network: {cidr: 10.0.0.0/24, gatway: 10.0.0.1}\n", "network.gatway: unknown key"),
    ("wrong type", "flavors: [{name: x, vcpus: two, ram_mb: 512, disk_gb: 1}]\n", "flavors[0].vcpus: expected an integer"),
    ("bad IP", "management_ip: 10.0.0.300\n", "management_ip: expected an IPv4 address"),
    ("bad CIDR", "network: {cidr: 10.0.0.1/24}\n", "network.cidr: expected an IPv4 network"),
    ("bad CIDR text", "network: {cidr: tenant}\n", "network.cidr: expected an IPv4 network"),
    ("gateway outside CIDR", "network: {cidr: 10.0.0.0/24, gateway: 10.0.1.1}\n", "network.gateway: 10.0.1.1 is not a host address"),
    ("pool contains gateway", "network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, allocation_pool: {start: 10.0.0.1, end: 10.0.0.9}}\n",
     "network.allocation_pool: the range"),
    ("bad DNS", "network: {dns_servers: [dns.example]}\n", "network.dns_servers[0]: expected an IPv4 address"),
    ("missing SSH key file", "ssh_public_key_file: /nonexistent/id.pub\n", "ssh_public_key_file: /nonexistent/id.pub: file not found"),
    ("bad SSH key", "ssh_public_key: not-a-key\n", "ssh_public_key: expected one OpenSSH public key line"),
    ("bad root key", f"root_authorized_keys: ['{KEY}', not-a-key]\n",
     "root_authorized_keys[1]: expected one OpenSSH public key line"),
    ("root keys not a list", "root_authorized_keys: 7\n", "root_authorized_keys"),
    ("bad hostname", "hostname: Under_Score\n", "hostname: expected a lower-case DNS host name"),
    ("timeout scale below 1", "timeouts: {scale: 0.5}\n", "timeouts.scale: expected a number from 1 to 20, got 0.5"),
    ("timeout scale too large", "timeouts: {scale: 400}\n", "timeouts.scale: expected a number from 1 to 20, got 400"),
    ("timeout scale not a number", "timeouts: {scale: slow}\n", "timeouts.scale: expected a number"),
    ("unknown timeouts key", "timeouts: {factor: 4}\n", "timeouts.factor: unknown key"),
    ("dashboard: not a mapping", "dashboard: off\n", "dashboard: expected a mapping, got boolean false"),
    ("dashboard: enabled not a boolean", "dashboard: {enabled: maybe}\n", "dashboard.enabled: expected true or false"),
    ("dashboard: unknown key", "dashboard: {port: 8443}\n", "dashboard.port: unknown key"),
    ("unknown secret", "secrets: {root_password: abcdefgh12}\n", "secrets.root_password: unknown secret"),
    ("weak secret", "secrets: {admin_password: short}\n", "secrets.admin_password: expected 8 to 128 characters"),
    ("external: unknown mode", "external: {mode: bridge}\n", "external.mode: expected one of host, provider, none"),
    ("external: provider without interface", "external: {mode: provider}\n", "external.interface: provider mode needs"),
    ("external: interface in host mode", "external: {interface: eth1}\n", "external.interface: only provider mode"),
    ("external: interface is management", "management_interface: eth0\nexternal: {mode: provider, interface: eth0}\n",
     "external.interface: eth0 is already the management"),
    ("external: overlaps tenant", "external: {cidr: 192.168.0.0/16}\n", "external.cidr: 192.168.0.0/16 overlaps the tenant"),
    ("external: overlaps link-local", "external: {cidr: 169.254.0.0/24}\n", "external.cidr: 169.254.0.0/24 overlaps 169.254.0.0/16"),
    ("external: contains management", "management_ip: 10.20.20.5\n", "external.cidr: 10.20.20.0/24 contains management_ip"),
    ("external: gateway outside", "external: {gateway: 10.20.21.1}\n", "external.gateway: 10.20.21.1 is not a host address"),
    ("external: range outside", "external: {floating_range: {start: 10.20.20.10, end: 10.20.30.1}}\n",
     "external.floating_range.end: 10.20.30.1 is not a host address"),
    ("external: range holds gateway", "external: {floating_range: {start: 10.20.20.1, end: 10.20.20.9}}\n",
     "external.floating_range: the range"),
    ("external: same name as tenant", "external: {name: nat}\n", "external.name: 'nat' is already"),
    # Pattern checks match the whole value: a trailing newline is refused everywhere.
    ("hostname with newline", 'hostname: "cloud1\\n"\n', "hostname: expected a lower-case DNS host name, got 'cloud1\\n'"),
    ("interface with newline", 'management_interface: "eth0\\n"\n', "management_interface: expected a network interface name"),
    ("network name with newline", 'network: {name: "nat\\n"}\n', "network.name: expected a name of letters"),
    ("region with newline", 'region: "RegionOne\\n"\n', "region: expected a name of letters"),
    ("flavor id with newline", 'flavors: [{name: x, id: "1\\n", vcpus: 1, ram_mb: 512, disk_gb: 1}]\n', "flavors[0].id: expected 'auto' or an id"),
    ("secret with newline", 'secrets: {admin_password: "abcdefgh12\\n"}\n', "secrets.admin_password: expected 8 to 128 characters"),
    ("SSH key with newline", f'ssh_public_key: "{KEY}\\nssh-rsa AAAA x"\n', "ssh_public_key: expected one OpenSSH public key line"),
    # File inputs: size-limited, UTF-8, regular files only; none of them can hang the render.
    ("key file is a device", "ssh_public_key_file: /dev/zero\n", "ssh_public_key_file: /dev/zero: expected a regular file, got a character device"),
    ("key file is a directory", "ssh_public_key_file: /\n", "ssh_public_key_file: /: expected a regular file, got a directory"),
    ("key file is a FIFO", "ssh_public_key_file: fifo.pub\n", "fifo.pub: expected a regular file, got a FIFO"),
    ("key file is binary", "ssh_public_key_file: binary.pub\n", "binary.pub: is a binary file"),
    ("key file is not UTF-8", "ssh_public_key_file: latin1.pub\n", "latin1.pub: is not UTF-8 text"),
    ("key file too large", "ssh_public_key_file: huge.pub\n", "huge.pub: is 20000 bytes; expected at most 16384"),
    ("site file not UTF-8", b"hostname: caf\xe9\n", "is not UTF-8 text"),
    ("site file binary", b"\x00\x01\x02", "is a binary file"),
    # Addresses of this host.
    ("management_ip unspecified", "management_ip: 0.0.0.0\n", "management_ip: expected a unicast address of this host, got 0.0.0.0 (the unspecified"),
    ("management_ip loopback", "management_ip: 127.0.0.1\n", "management_ip: expected a unicast address of this host, got 127.0.0.1 (a loopback"),
    ("overlay_ip multicast", "overlay_ip: 239.1.1.1\n", "overlay_ip: expected a unicast address of this host, got 239.1.1.1 (a multicast"),
    ("overlay_ip link-local", "overlay_ip: 169.254.3.4\n", "overlay_ip: expected a unicast address of this host, got 169.254.3.4 (a link-local"),
    # Overlapping ranges.
    ("tenant contains management", "management_ip: 192.168.0.5\n", "network.cidr: 192.168.0.0/24 contains management_ip 192.168.0.5"),
    ("tenant contains overlay", "overlay_ip: 192.168.0.7\n", "network.cidr: 192.168.0.0/24 contains overlay_ip 192.168.0.7"),
    ("tenant link-local", "network: {cidr: 169.254.0.0/16}\n", "network.cidr: 169.254.0.0/16 overlaps 169.254.0.0/16"),
    ("tenant loopback", "network: {cidr: 127.0.0.0/24}\n", "network.cidr: 127.0.0.0/24 overlaps 127.0.0.0/8 (loopback)"),
    ("tenant moved onto the external default", "network: {cidr: 10.20.0.0/16}\n",
     "network.cidr: 10.20.0.0/16 overlaps external.cidr 10.20.20.0/24 (its default); pick another tenant range"),
    ("both set, overlapping", "network: {cidr: 10.30.0.0/16}\nexternal: {cidr: 10.30.1.0/24}\n",
     "external.cidr: 10.30.1.0/24 overlaps the tenant network.cidr 10.30.0.0/16"),
    # DNS servers and flavors.
    ("too many DNS servers", "network: {dns_servers: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6]}\n",
     "network.dns_servers: 6 servers; Neutron accepts at most 5"),
    ("duplicate DNS server", "network: {dns_servers: [10.0.0.1, 10.0.0.1]}\n", "network.dns_servers[1]: 10.0.0.1 is listed twice"),
    ("duplicate flavor id", "flavors: [{name: a, id: 1, vcpus: 1, ram_mb: 512, disk_gb: 1}, {name: b, id: '1', vcpus: 1, ram_mb: 512, disk_gb: 1}]\n",
     "flavors[1].id: duplicate flavor id '1'"),
    ("duplicate flavor name", "flavors: [{name: a, vcpus: 1, ram_mb: 512, disk_gb: 1}, {name: a, vcpus: 2, ram_mb: 512, disk_gb: 1}]\n",
     "flavors[1].name: duplicate flavor name 'a'"),
    # Joining a cloud: the token's form is checked (never echoed); a joining node's site
    # says nothing only a controller's says.
    ("join: no token", "join: {}\n", "join: give either token or token_file"),
    ("join: both forms", f"join: {{token: '{TOKEN}', token_file: t}}\n", "join: give either token or token_file"),
    ("join: unknown key", "join: {tokn: x}\n", "join.tokn: unknown key"),
    ("join: malformed token", "join: {token: aj1.abc}\n", "join.token: not a join token: its body is not base64url"),
    ("join: token not text", "join: {token: 7}\n", "join.token: expected a string"),
    ("join: token file missing", "join: {token_file: /nonexistent/t}\n", "join.token_file: /nonexistent/t: file not found"),
    ("join: token file binary", "join: {token_file: binary.pub}\n", "binary.pub: is a binary file"),
    ("join: token file too large", "join: {token_file: huge.pub}\n", "huge.pub: is 20000 bytes; expected at most 4096"),
    ("join: token file not a token", "join: {token_file: latin1.pub}\n", "latin1.pub: is not UTF-8 text"),
    ("join: controller's field", f"join: {{token: '{TOKEN}'}}\nnetwork: {{cidr: 10.9.0.0/24}}\n",
     "network: only a controller's site config says this"),
    ("join: secrets", f"join: {{token: '{TOKEN}'}}\nsecrets: {{admin_password: abcdefgh12}}\n",
     "secrets: only a controller's site config says this"),
    ("join: other host name", f"join: {{token: '{TOKEN}'}}\nhostname: c3\n",
     "hostname: 'c3' is not the join token's node name 'c2'"),
    ("bool as port-like int", "flavors: [{name: x, vcpus: true, ram_mb: 512, disk_gb: 1}]\n", "flavors[0].vcpus: expected an integer"),
]


def _key_files(directory: Path) -> None:
    """Key files of every refused kind, beside the site file that names them."""
    os.mkfifo(directory / "fifo.pub")  # no writer: reading it blocking would hang
    (directory / "binary.pub").write_bytes(b"ssh-ed25519 AAAA\x00\x01")
    (directory / "latin1.pub").write_bytes(KEY.encode()[:-4] + b"d\xe9sk\n")
    (directory / "huge.pub").write_text(KEY[:40] + "A" * (20000 - 41) + "\n")


@pytest.mark.parametrize("label,text,message", BAD_SITES, ids=[b[0] for b in BAD_SITES])
def test_bad_site_is_rejected_by_invoke_render(tmp_path, label, text, message):
    site = tmp_path / "appliance.yaml"
    if isinstance(text, bytes):
        site.write_bytes(text)
    else:
        site.write_text(text)
    _key_files(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run([*INVOKE, "render", "--site", str(site), "--out", str(out)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {site}: "), lines[0]
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists(), "a rejected site must write nothing"


def test_empty_site_is_all_defaults(tmp_path):
    site = tmp_path / "appliance.yaml"
    site.write_text("")
    assert load_site(site, load_profile("bookworm-zed")) == SiteConfig()


def test_defaults_derive_gateway_and_pool():
    site = SiteConfig()
    assert site.gateway() == "192.168.0.1"
    pool = site.allocation_pool()
    assert (pool.start, pool.end) == ("192.168.0.2", "192.168.0.254")


def test_pool_below_a_last_address_gateway(tmp_path):
    site = tmp_path / "s.yaml"
    site.write_text("network: {cidr: 10.1.0.0/28, gateway: 10.1.0.14}\n")
    pool = load_site(site, load_profile("bookworm-zed")).allocation_pool()
    assert (pool.start, pool.end) == ("10.1.0.1", "10.1.0.13")


def test_ssh_key_file_relative_to_site_file(tmp_path):
    (tmp_path / "id.pub").write_text(KEY + "\n")
    site = tmp_path / "s.yaml"
    site.write_text("ssh_public_key_file: id.pub\nflavors: [{name: tiny, id: 1, vcpus: 1, ram_mb: 128, disk_gb: 1}]\n")
    loaded = load_site(site, load_profile("bookworm-zed"))
    assert loaded.flavors[0].id == 1 and loaded.ssh_public_key_file == "id.pub"


def test_both_key_forms_are_refused(tmp_path):
    (tmp_path / "id.pub").write_text(KEY)
    site = tmp_path / "s.yaml"
    site.write_text(f"ssh_public_key: {KEY}\nssh_public_key_file: id.pub\n")
    with pytest.raises(ConfigError, match="ssh_public_key_file: give either"):
        load_site(site, load_profile("bookworm-zed"))


def test_render_without_site_uses_defaults(tmp_path):
    result = subprocess.run([*INVOKE, "render", "--profile", "xenial-newton", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "etc/keystone/keystone-paste.ini").exists()


def test_unknown_profile_is_one_line(tmp_path):
    result = subprocess.run([*INVOKE, "render", "--profile", "jammy-zed", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown profile 'jammy-zed' (available: bookworm-zed, trixie-epoxy, xenial-newton)"


SITE_PATHS = [
    ("a device", lambda tmp: "/dev/zero", "error: /dev/zero: expected a regular file, got a character device"),
    ("a directory", lambda tmp: str(tmp), "expected a regular file, got a directory"),
    ("a FIFO", lambda tmp: (os.mkfifo(tmp / "site.fifo"), str(tmp / "site.fifo"))[1], "expected a regular file, got a FIFO"),
    ("too large", lambda tmp: ((tmp / "big.yaml").write_text("# x\n" * 70000), str(tmp / "big.yaml"))[1],
     "is 280000 bytes; expected at most 262144"),
]


@pytest.mark.parametrize("label,make,message", SITE_PATHS, ids=[s[0] for s in SITE_PATHS])
def test_site_file_of_the_wrong_kind_is_one_line_and_never_hangs(tmp_path, label, make, message):
    site = make(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run([*INVOKE, "render", "--site", site, "--out", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_readme_site_example_is_valid(tmp_path):
    """The site config example in the README, with a real key where it shows a shortened one."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "AAAA…" in example
    site = tmp_path / "appliance.yaml"
    site.write_text(example.replace("ssh-ed25519 AAAA… you@laptop", KEY))
    loaded = load_site(site, load_profile("bookworm-zed"))
    assert loaded.timeouts.scale == 4 and loaded.ssh_public_key == KEY


def test_a_join_site_loads_and_its_token_parses(tmp_path):
    from appliance.site_checks import join_token

    (tmp_path / "join.token").write_text(TOKEN + "\n")
    site = tmp_path / "s.yaml"
    site.write_text("join: {token_file: join.token}\nhostname: c2\nroot_authorized_keys: ['%s']\n" % KEY)
    loaded = load_site(site, load_profile("trixie-epoxy"))
    assert join_token(loaded, str(site), tmp_path).name == "c2"


def test_join_needs_a_profile_with_a_compute_role(tmp_path):
    site = tmp_path / "s.yaml"
    site.write_text(f"join: {{token: '{TOKEN}'}}\n")
    with pytest.raises(ConfigError, match="join: profile bookworm-zed has no compute role"):
        load_site(site, load_profile("bookworm-zed"))


def test_a_bad_token_is_never_echoed(tmp_path):
    site = tmp_path / "s.yaml"
    damaged = TOKEN[:-5]
    site.write_text(f"join: {{token: '{damaged}'}}\n")
    with pytest.raises(ConfigError) as caught:
        load_site(site, load_profile("trixie-epoxy"))
    assert damaged not in str(caught.value) and damaged[4:40] not in str(caught.value)


def test_render_of_a_join_site_writes_the_nodes_files(tmp_path):
    site = tmp_path / "s.yaml"
    site.write_text(f"join: {{token: '{TOKEN}'}}\n")
    out = tmp_path / "out"
    result = subprocess.run([*INVOKE, "render", "--site", str(site), "--out", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (out / "etc/nova/nova-compute.conf").is_file()
    for controller_only in ("etc/mysql", "etc/keystone", "root/rc.admin", "etc/rabbitmq"):
        assert not (out / controller_only).exists(), controller_only


# One row per machine: (label, profile, site config text or None, whether it joined, role).
ROLES = [
    ("a controller: no site", "trixie-epoxy", None, False, "controller"),
    ("a controller: a site without join", "trixie-epoxy", "hostname: c1\n", False, "controller"),
    ("a site that joins", "trixie-epoxy", f"join: {{token: '{TOKEN}'}}\n", False, "compute"),
    ("a machine that joined", "trixie-epoxy", None, True, "compute"),
    ("an unreadable site says nothing here", "trixie-epoxy", "join: [\n", False, "controller"),
    ("a profile without the role: the site check refuses", "bookworm-zed", f"join: {{token: '{TOKEN}'}}\n", False,
     "controller"),
]


@pytest.mark.parametrize("label,profile,site,joined,role", ROLES, ids=[r[0] for r in ROLES])
def test_the_role_a_machine_runs_and_its_steps(tmp_path, label, profile, site, joined, role):
    """A site that joins boots a node's steps, never the controller's: those would make an
    island cloud of a machine meant to join another."""
    from types import SimpleNamespace

    from appliance.agent.context import AgentContext, Paths
    from appliance.agent.steps import first_boot_steps
    from appliance.cluster.node import NodeFiles
    from pipeline.profiles import resolved_profile_yaml

    paths = Paths(profile=tmp_path / "profile.yaml", config_dir=tmp_path / "etc", state_dir=tmp_path)
    paths.profile.write_text(resolved_profile_yaml(profile))
    paths.config_dir.mkdir()
    if site is not None:
        paths.site.write_text(site)
    if joined:
        NodeFiles(config_dir=paths.config_dir).credentials.write_text("node: c2\n")
    ctx = AgentContext.load(paths)
    assert ctx.role == role
    # The site config is checked against the whole profile: its join needs the role.
    if profile == "bookworm-zed":
        with pytest.raises(ConfigError, match="join: profile bookworm-zed has no compute role"):
            ctx.site
    elif site is not None and "[" not in site:
        assert (ctx.site.join is not None) == ("join" in site)
    names = [s.name for s in first_boot_steps(SimpleNamespace(profile=ctx.profile))]
    assert ("bundle" in names, "keystone" in names) == (role == "compute", role == "controller")
