"""The dashboard's rendered files (Horizon's settings, Apache's listeners and site) and what
status shows of it."""

import ast

import pytest

from appliance import credentials
from appliance.render import HostFacts, render_files
from appliance.sitefile import load_site
from pipeline.profiles import load_profile

SECRET = "s3cretKEYs3cretKEYs3cretKEY01234"


@pytest.fixture(params=["bookworm-zed", "trixie-epoxy"])
def rendered(request):
    profile = load_profile(request.param)
    site = load_site(None, profile)
    secrets = {**credentials.placeholder_secrets(profile), "horizon_secret_key": SECRET}
    facts = HostFacts(hostname="cloud1", management_ip="10.254.0.10", overlay_ip="10.254.0.10")
    return profile, {f.spec.path: f for f in render_files(profile, site, facts, secrets)}


def settings_of(text: str) -> dict:
    """Top-level assignments of a settings file whose values are literals."""
    values = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def test_horizon_settings_keystone_memcached_secret_and_what_lxc_lacks(rendered):
    _, files = rendered
    spec = files["/etc/openstack-dashboard/local_settings.py"]
    assert (spec.spec.mode, spec.spec.owner) == ("0600", "horizon")
    s = settings_of(spec.content)
    assert s["SECRET_KEY"] == SECRET and s["DEBUG"] is False
    assert s["OPENSTACK_KEYSTONE_URL"] == "http://cloud1:5000/v3"
    assert s["OPENSTACK_KEYSTONE_DEFAULT_DOMAIN"] == "Default" and s["DEFAULT_SERVICE_REGIONS"] == {"*": "RegionOne"}
    assert s["CACHES"]["default"]["LOCATION"] == "127.0.0.1:11211"
    assert s["SESSION_ENGINE"] == "django.contrib.sessions.backends.cache"
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["ALLOWED_HOSTS"] == ["10.254.0.10", "cloud1"]
    assert s["CONSOLE_TYPE"] is None
    launch = s["LAUNCH_INSTANCE_DEFAULTS"]
    assert launch["hide_create_volume"] and launch["disable_volume"] and launch["disable_instance_snapshot"]


def test_horizon_reads_novas_own_policy(rendered):
    _, files = rendered
    assert files["/etc/openstack-dashboard/policy/nova_policy.d/appliance.yaml"].content == files["/etc/nova/policy.yaml"].content
    assert '"os_compute_api:servers:create_image": "!"' in files["/etc/nova/policy.yaml"].content


def test_apache_listens_on_the_management_address_only_and_http_redirects(rendered):
    profile, files = rendered
    ports = files["/etc/apache2/ports.conf"].content
    listens = [line.split()[1] for line in ports.splitlines() if line.startswith("Listen")]
    assert listens == ["10.254.0.10:80", "10.254.0.10:443"]
    assert {p.port: p.bind for p in profile.service("dashboard").ports} == {80: "management", 443: "management"}
    site = files["/etc/apache2/sites-available/appliance-dashboard.conf"].content
    http = site.split("<VirtualHost 10.254.0.10:443>")[0]
    assert "Redirect permanent / https://10.254.0.10/" in http and "WSGI" not in http
    assert "SSLCertificateKeyFile /etc/appliance/tls/dashboard.key" in site
    assert f"WSGIScriptAlias {profile.settings['dashboard_webroot'].rstrip('/')} " in site
