"""bookworm-zed renders files that configparser reads and that carry what Zed needs."""

import configparser
import re
import stat

import pytest
import yaml
from project import FIXTURES

from appliance.credentials import placeholder_secrets, secret_names
from appliance.render import HostFacts, render_files, render_site
from appliance.sitefile import load_site
from pipeline.profiles import load_profile

# file -> {section: {option: expected value or None for "present"}}
ZED_NEEDS = {
    "/etc/keystone/keystone.conf": {
        "database": {"connection": None},
        "token": {"provider": "fernet"},
        "cache": {"memcache_servers": "127.0.0.1:11211"},
    },
    "/etc/glance/glance-api.conf": {
        "database": {"connection": None},
        "keystone_authtoken": {"www_authenticate_uri": "http://controller:5000", "auth_url": "http://controller:5000"},
        "glance_store": {"filesystem_store_datadir": None},
        "paste_deploy": {"flavor": "keystone"},
    },
    "/etc/placement/placement.conf": {
        "placement_database": {"connection": None},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": {"www_authenticate_uri": None, "username": "placement"},
    },
    "/etc/nova/nova.conf": {
        "DEFAULT": {"transport_url": None, "my_ip": None, "use_cow_images": "false", "force_raw_images": "true",
                    "resume_guests_state_on_host_boot": "true"},
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": None},
        "database": {"connection": None},
        "keystone_authtoken": {"www_authenticate_uri": None},
        "placement": {"username": "placement", "auth_type": "password", "region_name": "RegionOne"},
        "neutron": {"username": "neutron", "service_metadata_proxy": "true", "metadata_proxy_shared_secret": None},
        "libvirt": {"virt_type": "lxc", "images_type": "raw"},
        "glance": {"api_servers": "http://controller:9292"},
        "service_user": {"send_service_user_token": "true"},
        "oslo_concurrency": {"lock_path": None},
    },
    "/etc/nova/nova-compute.conf": {"libvirt": {"virt_type": "lxc"}},
    "/etc/neutron/neutron.conf": {
        "DEFAULT": {"core_plugin": "ml2", "service_plugins": "router", "transport_url": None},
        "database": {"connection": None},
        "keystone_authtoken": {"www_authenticate_uri": None},
        "nova": {"username": "nova"},
        "experimental": {"linuxbridge": "true"},
    },
    "/etc/neutron/plugins/ml2/ml2_conf.ini": {
        "ml2": {"mechanism_drivers": "linuxbridge,l2population", "tenant_network_types": "vxlan"},
        "ml2_type_vxlan": {"vni_ranges": "1:1000"},
    },
    "/etc/neutron/plugins/ml2/linuxbridge_agent.ini": {
        "vxlan": {"enable_vxlan": "True", "local_ip": None},
        "securitygroup": {"firewall_driver": None},
        "experimental": {"linuxbridge": "true"},
    },
    "/etc/neutron/l3_agent.ini": {"DEFAULT": {"interface_driver": "linuxbridge"}},
    "/etc/neutron/dhcp_agent.ini": {"DEFAULT": {"interface_driver": "linuxbridge", "enable_isolated_metadata": "true"}},
    "/etc/neutron/metadata_agent.ini": {"DEFAULT": {"nova_metadata_host": "127.0.0.1", "metadata_proxy_shared_secret": None}},
}


@pytest.fixture(scope="module")
def zed():
    profile = load_profile("bookworm-zed")
    site = load_site(None, load_profile("bookworm-zed"))
    files = render_files(profile, site, HostFacts.from_site(site), placeholder_secrets(profile))
    return {f.spec.path: f for f in files}


@pytest.mark.parametrize("path", sorted(ZED_NEEDS))
def test_zed_file_parses_and_has_what_zed_needs(path, zed):
    parser = configparser.ConfigParser(interpolation=None, strict=True, allow_no_value=True)
    parser.optionxform = str
    parser.read_string(zed[path].content, source=path)
    for section, options in ZED_NEEDS[path].items():
        assert section == "DEFAULT" or parser.has_section(section), f"{path}: [{section}] missing"
        for option, value in options.items():
            assert parser.has_option(section, option), f"{path}: [{section}] {option} missing"
            if value is not None:
                assert parser.get(section, option) == value, f"{path}: [{section}] {option}"


def test_zed_uses_no_newton_only_options(zed):
    for path, item in zed.items():
        assert "auth_uri =" not in item.content, path
        assert ":35357" not in item.content, path
        assert "nova_metadata_ip" not in item.content, path


def test_zed_has_no_consoleauth_or_registry():
    profile = load_profile("bookworm-zed")
    assert "nova-consoleauth" not in profile.units()
    assert "glance-registry" not in profile.units()
    assert profile.has_service("placement")
    assert {p.port for s in profile.services for p in s.ports} >= {5000, 8778} and 35357 not in {
        p.port for s in profile.services for p in s.ports}


def test_clouds_yaml_has_admin_and_lxc(zed):
    clouds = yaml.safe_load(zed["/root/.config/openstack/clouds.yaml"].content)["clouds"]
    assert clouds["admin"]["auth"]["username"] == "admin"
    assert clouds["lxc"]["auth"]["project_name"] == "lxc"
    assert clouds["admin"]["auth"]["auth_url"] == "http://controller:5000/v3"


def test_render_tree_writes_secret_files_0600(tmp_path):
    written = render_site(load_profile("bookworm-zed"), None, tmp_path)
    profile = load_profile("bookworm-zed")
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in written}
    for spec in profile.files():
        target = tmp_path / spec.path.lstrip("/")
        assert modes[target] == spec.mode_bits
        if "password" in target.read_text() or "PLACEHOLDER" in target.read_text():
            # 0600, or 0400 where the reader insists (Erlang's cookie): never group or other.
            assert modes[target] in (0o600, 0o400), f"{spec.path} holds a secret but is {oct(modes[target])}"
    assert (tmp_path / "root/rc.admin").exists()
    assert (tmp_path / "etc/nova/nova.conf").exists()


def test_site_fixed_secret_is_used(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("secrets: {nova_db_password: fixed-secret-1}\n")
    render_site(load_profile("bookworm-zed"), site, tmp_path / "out")
    assert "nova:fixed-secret-1@127.0.0.1/nova_api" in (tmp_path / "out/etc/nova/nova.conf").read_text()


def test_seed_site_renders_for_zed_too(tmp_path):
    render_site(load_profile("bookworm-zed"), FIXTURES / "seed-site.yaml", tmp_path)
    agent = (tmp_path / "etc/neutron/plugins/ml2/linuxbridge_agent.ini").read_text()
    assert "physical_interface_mappings = provider:eth1" in agent
    assert "local_ip = 10.208.132.45" in agent
    assert "bind-address = 127.0.0.1" in (tmp_path / "etc/mysql/mariadb.conf.d/99-openstack.cnf").read_text()


def test_every_secret_name_is_used_by_some_template(zed):
    profile = load_profile("bookworm-zed")
    text = "\n".join(f.content for f in zed.values())
    for name in secret_names(profile):
        # Database passwords must sit in a connection URL, the others anywhere.
        marker = f"PLACEHOLDER-{name}@" if name.endswith("_db_password") else f"PLACEHOLDER-{name}"
        assert marker in text, name


UWSGI_INIS = {
    "/etc/keystone/keystone-uwsgi.ini": ("/usr/bin/keystone-wsgi-public", "32"),
    "/etc/placement/placement-api-uwsgi.ini": ("/usr/bin/placement-api", "32"),
    "/etc/nova/nova-api-uwsgi.ini": ("/usr/bin/nova-api-wsgi", "1"),
    "/etc/nova/nova-api-metadata-uwsgi.ini": ("/usr/bin/nova-metadata-wsgi", "1"),
    "/etc/neutron/neutron-api-uwsgi.ini": ("/usr/bin/neutron-api", "1"),
}


def _uwsgi_options(content: str) -> dict[str, list[str]]:
    # uwsgi allows repeated keys, which configparser does not: parse by hand.
    options: dict[str, list[str]] = {}
    for line in content.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            options.setdefault(key.strip(), []).append(value.strip())
    return options


@pytest.mark.parametrize("path", sorted(UWSGI_INIS))
def test_uwsgi_api_is_sized_by_workers_and_closes_connections(path, zed):
    wsgi_file, threads = UWSGI_INIS[path]
    options = _uwsgi_options(zed[path].content)
    assert [line for line in zed[path].content.splitlines() if line.startswith("[")] == ["[uwsgi]"]
    assert options["processes"] == [str(load_profile("bookworm-zed").settings["workers"])]
    assert options["threads"] == [threads]
    assert options["wsgi-file"] == [wsgi_file]
    assert options["add-header"] == ["Connection: close"]
    assert all(len(v) == 1 for v in options.values()), "an option given twice: uwsgi would use both"


def test_worker_setting_reaches_every_api_and_rpc_service(tmp_path):
    from dataclasses import replace

    profile = load_profile("bookworm-zed")
    bigger = replace(profile, settings={**profile.settings, "workers": 4})
    site = load_site(None, load_profile("bookworm-zed"))
    files = {f.spec.path: f.content for f in render_files(bigger, site, HostFacts.from_site(site),
                                                            placeholder_secrets(bigger))}
    for path in UWSGI_INIS:
        assert _uwsgi_options(files[path])["processes"] == ["4"], path
    assert "\nworkers = 4\n" in files["/etc/glance/glance-api.conf"]
    assert "rpc_state_report_workers = 3" in files["/etc/neutron/neutron.conf"]
    assert "metadata_workers = 4" in files["/etc/neutron/metadata_agent.ini"]


def test_one_worker_means_no_forked_children(zed):
    assert "\nworkers = 0\n" in zed["/etc/glance/glance-api.conf"].content
    assert "metadata_workers = 0" in zed["/etc/neutron/metadata_agent.ini"].content
    assert "rpc_state_report_workers = 0" in zed["/etc/neutron/neutron.conf"].content


def test_listeners_render_at_their_declared_scope(zed):
    """Loopback-declared servers bind 127.0.0.1 and every client of them connects there."""
    memcached = zed["/etc/memcached.conf"].content
    assert "\n-l 127.0.0.1\n" in memcached
    clients = [path for path, item in zed.items() if "11211" in item.content and path != "/etc/memcached.conf"]
    assert clients, "no memcached client found"
    for path in clients:
        # oslo.cache and keystonemiddleware options, or Django's cache LOCATION (Horizon).
        servers = re.findall(r'^(?:memcache[d]?_servers = |\s*"LOCATION": ")([^"\n]*)', zed[path].content, re.M)
        assert servers and set(servers) == {"127.0.0.1:11211"}, (path, servers)
    # The databases and AMQP: every connection URL names loopback.
    urls = [url for item in zed.values() for url in re.findall(r"(?:mysql\+pymysql|rabbit)://\S+", item.content)]
    assert urls and {url.rpartition("@")[2].partition("/")[0] for url in urls} == {"127.0.0.1"}, urls
    env = zed["/etc/rabbitmq/rabbitmq-env.conf"].content
    assert "NODE_IP_ADDRESS=127.0.0.1" in env
    # Exported, so RabbitMQ's one-off epmd-starter nodes inherit it too.
    assert 'export ERL_ZFLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' in env
    assert "NODENAME=rabbit@localhost" in env
    epmd = zed["/etc/systemd/system/epmd.socket.d/appliance.conf"].content
    assert "ListenStream=\nListenStream=127.0.0.1:4369\n" in epmd
    metadata = zed["/etc/default/nova-api-metadata"].content
    assert 'DAEMON_ARGS="--http-socket 127.0.0.1:8775 --ini /etc/nova/nova-api-metadata-uwsgi.ini"' in metadata


def test_rabbitmq_definitions_carry_the_openstack_user_as_a_salted_sha256(tmp_path):
    import base64
    import hashlib
    import json

    site = tmp_path / "site.yaml"
    site.write_text("secrets: {rabbitmq_password: fixed-amqp-secret}\n")
    render_site(load_profile("bookworm-zed"), site, tmp_path / "out")
    conf = (tmp_path / "out/etc/rabbitmq/rabbitmq.conf").read_text()
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf
    definitions = json.loads((tmp_path / "out/etc/rabbitmq/definitions.json").read_text())
    assert "fixed-amqp-secret" not in json.dumps(definitions)
    (user,) = definitions["users"]
    assert user["name"] == "openstack" and user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(user["password_hash"])
    assert len(raw) == 4 + 32 and raw[4:] == hashlib.sha256(raw[:4] + b"fixed-amqp-secret").digest()
    assert definitions["permissions"] == [{"user": "openstack", "vhost": "/", "configure": ".*", "write": ".*",
                                           "read": ".*"}]


@pytest.mark.parametrize("patience, timeout", [(1.0, "30"), (4.0, "120"), (2.5, "75")])
def test_guest_shutdown_timeout_scales_with_the_machines_slowness(patience, timeout):
    """libvirt-guests gives the instances the profile's guest_shutdown_timeout (30 s) on real
    hardware and that many times longer on an emulated machine (host fact ``patience``)."""
    profile = load_profile("bookworm-zed")
    site = load_site(None, load_profile("bookworm-zed"))
    files = render_files(profile, site, HostFacts.from_site(site, patience=patience), placeholder_secrets(profile))
    text = next(f.content for f in files if f.spec.path == "/etc/default/libvirt-guests")
    assert re.search(r"^SHUTDOWN_TIMEOUT=(\S+)$", text, re.M).group(1) == timeout
