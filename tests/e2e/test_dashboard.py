"""The dashboard in a real browser (tests/e2e/dashboard_browser.py: Debian's headless Chromium
and chromedriver, driven by Selenium) from the harness's own network namespace, against the
session's appliance: HTTPS with the appliance's CA, a wrong password refused, and an instance
launched, reached, deleted through the forms. A passing run keeps screenshots of the instance
Active and of its console log, a failure the screenshot and page source, under
artifacts/dashboard/."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from project import ROOT

from appliance.tls import TlsPaths
from pipeline.profiles import load_profile

from .conftest import ARTIFACTS, PROFILE, in_appliance

pytestmark = pytest.mark.e2e

BROWSER = ROOT / "tests" / "e2e" / "dashboard_browser.py"
EVIDENCE = ARTIFACTS / "dashboard"
NEEDED = {"chromium": "/usr/bin/chromium", "chromedriver": "/usr/bin/chromedriver", "certutil": "certutil"}

SITE_AND_PASSWORD = r"""
import json
from appliance.agent.context import AgentContext, Paths
ctx = AgentContext.load(Paths())
site = ctx.site
print(json.dumps({"password": ctx.secrets["lxc_password"], "admin_password": ctx.secrets["admin_password"],
                  "image": site.image_name, "flavor": site.flavors[0].name,
                  "network": site.network.name, "keypair": site.keypair_name, "external": site.external.name,
                  "user": ctx.profile.settings.get("guest_user", "root"), "key": str(ctx.paths.private_key)}))
"""

# Leaves the shared appliance as it was, whatever the browser got to.
CLEAN_UP = r"""
import openstack
c = openstack.connect(cloud="lxc")
for server in c.compute.servers(name="^dashboard-e2e$"):
    c.compute.delete_server(server)
    c.compute.wait_for_delete(server, wait=300)
for ip in c.network.ips():
    if ip.port_id is None:
        c.network.delete_ip(ip)
"""


@pytest.fixture(scope="module")
def browser_ready():
    missing = [name for name, path in NEEDED.items() if shutil.which(path) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {', '.join(missing)} (.ci/run installs chromium, chromium-driver, libnss3-tools)")
        pytest.skip(f"no {', '.join(missing)} on this host (apt-get install chromium chromium-driver libnss3-tools)")


@pytest.fixture(scope="module")
def dashboard(appliance, browser_ready, tmp_path_factory):
    profile = load_profile(PROFILE)
    facts = json.loads(in_appliance(appliance, "cat", "/var/lib/appliance/facts.json").stdout)
    ca = tmp_path_factory.mktemp("dashboard") / "ca.crt"
    ca.write_text(in_appliance(appliance, "cat", str(TlsPaths().ca_cert)).stdout)
    info = json.loads(in_appliance(appliance, "python3", "-c", SITE_AND_PASSWORD).stdout)
    url = f"https://{facts['management_ip']}{profile.settings['dashboard_webroot']}"
    yield {"url": url, "ca": ca, "address": facts["management_ip"], **info}
    in_appliance(appliance, "python3", "-c", CLEAN_UP, check=False)


def browser(appliance, scenario: str, dashboard: dict, *extra: str) -> subprocess.Popen:
    cmd = ["ip", "netns", "exec", appliance.netns, sys.executable, str(BROWSER), scenario, dashboard["url"],
           str(dashboard["ca"]), str(EVIDENCE), *extra]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "DASHBOARD_PASSWORD": dashboard["password"],
                                                   "DASHBOARD_ADMIN_PASSWORD": dashboard["admin_password"]})


def curl(appliance, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", appliance.netns, "curl", "-sS", "--max-time", "300", *args],
                          capture_output=True, text=True, timeout=600)


def test_login_page_answers_over_https_with_the_cas_certificate_and_http_redirects(appliance, dashboard):
    page = curl(appliance, "--cacert", str(dashboard["ca"]), "-o", "/dev/null", "-w", "%{http_code}",
                dashboard["url"] + "auth/login/")
    assert page.stdout == "200", page.stdout + page.stderr
    plain = curl(appliance, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                 f"http://{dashboard['address']}{dashboard['url'].split(dashboard['address'], 1)[1]}")
    assert plain.stdout == f"301 {dashboard['url']}", plain.stdout + plain.stderr
    untrusted = curl(appliance, "-o", "/dev/null", dashboard["url"] + "auth/login/")
    assert untrusted.returncode != 0, "the certificate verified without the appliance's CA"


def test_a_wrong_password_shows_the_login_error_and_opens_no_session(appliance, dashboard):
    run = browser(appliance, "login-fails", dashboard)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, out + err[-2000:]


def test_a_project_member_sees_no_admin_panel_and_admin_does(appliance, dashboard):
    run = browser(appliance, "roles", dashboard)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, out + err[-2000:]


def test_launch_reach_and_delete_an_instance_through_the_dashboard(appliance, dashboard):
    run = browser(appliance, "launch", dashboard, dashboard["image"], dashboard["flavor"], dashboard["network"],
                  dashboard["keypair"], dashboard["external"])
    lines = []
    try:
        for line in run.stdout:
            lines.append(line)
            data = json.loads(line) if line.startswith("{") else {}
            if "floating_ip" in data:
                ssh = in_appliance(appliance, "ssh", "-i", dashboard["key"], "-o", "BatchMode=yes",
                                   "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                   "-o", "ConnectTimeout=10", "-o", "ConnectionAttempts=30",
                                   f"{dashboard['user']}@{data['floating_ip']}", "true", timeout=600, check=False)
                run.stdin.write("continue\n" if ssh.returncode == 0 else "ssh failed\n")
                run.stdin.flush()
                assert ssh.returncode == 0, f"SSH to {data['floating_ip']} from the appliance: {ssh.stderr[-800:]}"
        run.wait(timeout=1200)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, "".join(lines) + run.stderr.read()[-2000:]
