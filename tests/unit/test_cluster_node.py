"""What a node keeps: every secret 0600 in a 0700 directory, certificates readable, nothing
written half; and the OVN metadata agent's copies, readable by its group only."""

import os
import stat

import pytest
import yaml

from appliance.cluster.bundle import NodeBundle
from appliance.cluster.node import NodeFiles, share_with_agent, write_bundle, write_key

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


KEY = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def shared(tmp_path):
    """A node that joined, and its agent copies for this test's own group (the node's is
    neutron's, which a test cannot chown to)."""
    files = NodeFiles(config_dir=tmp_path / "etc", agent_dir=tmp_path / "neutron" / "tls")
    write_key(files, KEY.encode())
    write_bundle(files, BUNDLE)
    return files, share_with_agent(files, os.getgid())


# One row per file or directory of the agent's: (label, path of NodeFiles, mode).
AGENT_MODES = [
    ("its directory: root and the agent's group enter", "agent_dir", 0o750),
    ("the key: the agent's group reads, others nothing", "agent_key", 0o640),
    ("its certificate", "agent_certificate", 0o644),
    ("the CA", "agent_ca", 0o644),
]


@pytest.mark.parametrize("label,name,wanted", AGENT_MODES, ids=[r[0] for r in AGENT_MODES])
def test_the_metadata_agent_reads_its_copies_by_group(shared, label, name, wanted):
    files, _ = shared
    path = getattr(files, name)
    assert mode(path) == wanted
    assert (path.stat().st_uid, path.stat().st_gid) == (os.geteuid(), os.getgid())


def test_the_agent_copies_are_the_originals_and_the_originals_stay_roots(shared):
    files, written = shared
    assert written == [files.agent_key, files.agent_certificate, files.agent_ca]
    assert files.agent_key.read_text() == KEY and files.agent_ca.read_text() == BUNDLE.ca_pem
    assert (mode(files.key), mode(files.tls_dir), mode(files.config_dir)) == (0o600, 0o700, 0o700)


def test_sharing_again_follows_the_originals_and_tightens_a_loosened_directory(shared):
    files, _ = shared
    os.chmod(files.agent_dir, 0o777)
    write_key(files, KEY.replace("AAAA", "BBBB").encode())
    share_with_agent(files, os.getgid())
    assert mode(files.agent_dir) == 0o750 and "BBBB" in files.agent_key.read_text()
    assert not list(files.agent_dir.glob(".*"))


def test_without_the_join_there_is_nothing_to_share(tmp_path):
    with pytest.raises(FileNotFoundError):
        share_with_agent(NodeFiles(config_dir=tmp_path / "etc", agent_dir=tmp_path / "tls"), os.getgid())
