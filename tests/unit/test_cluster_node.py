"""What a node keeps: every secret 0600 in a 0700 directory, certificates readable, nothing
written half."""

import stat

import yaml

from appliance.cluster.bundle import NodeBundle
from appliance.cluster.node import NodeFiles, write_bundle, write_key

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
BUNDLE = NodeBundle(node="c2", controller="c1", controller_ip="10.254.0.10", region="RegionOne",
                    keystone_url="http://c1:5000/v3", rabbitmq_user="node-c2", rabbitmq_password="Rabbit-pass-0123",
                    keystone_user="node-c2", keystone_password="Keystone-pass-0123",
                    metadata_secret="Metadata-secret-0123", ca_pem=PEM, certificate_pem=PEM)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_0600_certificates_0644(tmp_path):
    files = NodeFiles(config_dir=tmp_path / "etc")
    write_key(files, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    written = write_bundle(files, BUNDLE)
    assert {p.name for p in written} == {"node.yaml", "node.crt", "ca.crt"}
    assert (mode(files.key), mode(files.credentials), mode(files.certificate), mode(files.ca)) == (0o600, 0o600, 0o644, 0o644)
    assert mode(files.config_dir) == mode(files.tls_dir) == 0o700
    kept = yaml.safe_load(files.credentials.read_text())
    assert kept["rabbitmq_password"] == "Rabbit-pass-0123" and "certificate_pem" not in kept
    assert not list(files.config_dir.rglob(".*"))  # no temporary file left behind
