"""The appliance's CA and the dashboard's certificate (appliance/tls.py): made once, kept
while they fit, issued again when the host's names, the CA or the calendar say so."""

import datetime
import shutil
import subprocess

import pytest
from cryptography import x509

from appliance import tls

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
HOST, ADDRESS = "cloud1", "10.254.0.10"


@pytest.fixture
def paths(tmp_path):
    return tls.TlsPaths(private_dir=tmp_path / "etc" / "tls", public_dir=tmp_path / "var" / "tls")


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_first_run_makes_a_ca_and_a_server_certificate_keys_0600(paths):
    done = tls.ensure_certificates(paths, HOST, ADDRESS, now=NOW)
    assert [d.split(" ")[0] for d in done] == ["made", "issued"]
    assert oct(paths.ca_key.stat().st_mode & 0o777) == "0o600"
    assert oct(paths.server_key.stat().st_mode & 0o777) == "0o600"
    assert oct(paths.private_dir.stat().st_mode & 0o777) == "0o700"
    assert oct(paths.ca_cert.stat().st_mode & 0o777) == "0o644"
    ca, server = load(paths.ca_cert), load(paths.server_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [ADDRESS]
    assert tls.server_cert_problem(server, ca, HOST, ADDRESS, NOW) is None
    assert "PRIVATE KEY" not in " ".join(done)


def test_a_second_run_changes_nothing(paths):
    tls.ensure_certificates(paths, HOST, ADDRESS, now=NOW)
    before = {p: p.read_bytes() for p in (paths.ca_key, paths.ca_cert, paths.server_key, paths.server_cert)}
    assert tls.ensure_certificates(paths, HOST, ADDRESS, now=NOW + datetime.timedelta(days=100)) == []
    assert before == {p: p.read_bytes() for p in before}


# (what changed, host, address, days later, expected phrase; the CA stays in every row)
REISSUE = [
    ("host name", "cloud2", ADDRESS, 0, "names"),
    ("management address", HOST, "10.254.0.11", 0, "names"),
    ("near its end", HOST, ADDRESS, tls.SERVER_DAYS - 10, "expires"),
]


@pytest.mark.parametrize("label, host, address, days, phrase", REISSUE, ids=[r[0] for r in REISSUE])
def test_server_certificate_is_issued_again_when_it_no_longer_fits(paths, label, host, address, days, phrase):
    tls.ensure_certificates(paths, HOST, ADDRESS, now=NOW)
    ca = paths.ca_cert.read_bytes()
    done = tls.ensure_certificates(paths, host, address, now=NOW + datetime.timedelta(days=days))
    assert len(done) == 1 and f"(was: {phrase}" in done[0], done
    assert paths.ca_cert.read_bytes() == ca
    assert tls.server_cert_problem(load(paths.server_cert), load(paths.ca_cert), host, address,
                                   NOW + datetime.timedelta(days=days)) is None


def test_a_lost_ca_key_means_a_new_ca_and_a_new_server_certificate(paths):
    tls.ensure_certificates(paths, HOST, ADDRESS, now=NOW)
    paths.ca_key.unlink()
    done = tls.ensure_certificates(paths, HOST, ADDRESS, now=NOW)
    assert done[0] == "made a new CA" and "not signed by the appliance's CA" in done[1]


def test_certificates_fit_is_the_steps_done_check(paths):
    assert not tls.certificates_fit(paths, HOST, ADDRESS)
    tls.ensure_certificates(paths, HOST, ADDRESS)
    assert tls.certificates_fit(paths, HOST, ADDRESS)
    assert not tls.certificates_fit(paths, HOST, "10.254.0.99")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_fingerprint_is_what_openssl_prints_and_the_chain_verifies(paths):
    tls.ensure_certificates(paths, HOST, ADDRESS)
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(paths.ca_cert)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().split("=", 1)[1] == tls.fingerprint(paths.ca_cert.read_bytes())
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(paths.ca_cert), "-verify_ip", ADDRESS,
                             "-purpose", "sslserver", str(paths.server_cert)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


class _Ctx:
    """What the certificates step reads of an AgentContext."""

    def __init__(self, dashboard: bool):
        from appliance.render import HostFacts
        from appliance.sitefile import load_site
        from pipeline.profiles import load_profile

        self.profile = load_profile("trixie-epoxy")
        site = load_site(None, self.profile)
        if not dashboard:
            import dataclasses

            site = dataclasses.replace(site, dashboard=dataclasses.replace(site.dashboard, enabled=False))
        self.active_profile = self.profile.active(site)
        self.facts = HostFacts(hostname=HOST, management_ip=ADDRESS, overlay_ip=ADDRESS)


# One row per dashboard switch: the CA is made either way (add-node needs it to sign the
# join service's and the nodes' certificates); the dashboard's certificate only with it.
STEP_ROWS = [("dashboard on", True, True), ("dashboard off", False, False)]


@pytest.mark.parametrize("label,dashboard,server_cert", STEP_ROWS, ids=[r[0] for r in STEP_ROWS])
def test_the_certificates_step_makes_the_ca_whatever_the_dashboard(paths, tmp_path, monkeypatch, label, dashboard,
                                                                     server_cert):
    from appliance.agent import steps_dashboard
    from appliance.cluster.ca import controller_ca

    monkeypatch.setenv("APPLIANCE_AGENT_LOG", str(tmp_path / "agent.log"))
    monkeypatch.setattr(steps_dashboard, "unit_is_active", lambda unit: False)
    ctx = _Ctx(dashboard)
    assert not steps_dashboard.certificates_done(ctx, paths)
    steps_dashboard.certificates(ctx, paths)
    assert oct(paths.ca_key.stat().st_mode & 0o777) == "0o600"
    assert controller_ca(paths).ca_sha256()  # what add-node asks of it
    assert (paths.server_key.exists(), paths.server_cert.exists()) == (server_cert, server_cert)
    assert steps_dashboard.certificates_done(ctx, paths)
    ca = paths.ca_cert.read_bytes()
    steps_dashboard.certificates(ctx, paths)  # run again: the CA stays
    assert paths.ca_cert.read_bytes() == ca
    paths.ca_key.unlink()
    assert not steps_dashboard.certificates_done(ctx, paths)
