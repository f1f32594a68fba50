"""Where a node keeps what it received: each file written whole, with its final mode from the
first byte (``files.atomic_write``), secrets 0600 in the 0700 config directory.

Layout (``config_dir`` is /etc/appliance)::

    config_dir/node.yaml       0600  the bundle's fields but the certificates (users, passwords,
                                     the metadata secret, where the controller is)
    config_dir/tls/node.key    0600  the node's private key, made on the node (by the join)
    config_dir/tls/node.crt    0644  its certificate, CN = the node's name
    config_dir/tls/ca.crt      0644  the appliance CA it trusts

    agent_dir/                 0750 root:neutron  the OVN metadata agent's copies
    agent_dir/node.key         0640 root:neutron  (``share_with_agent``)
    agent_dir/node.crt, ca.crt 0644 root:neutron

The OVN metadata agent reads the southbound database over TLS with the node's key and
certificate, but runs as user ``neutron`` (Debian's unit: User=neutron), which cannot enter
config_dir (0700 root, beside node.yaml's passwords). Rather than open that directory, it
gets copies in a directory of its own that only root and group ``neutron`` may enter, the
key readable by that group and no one else; ovn-controller (root) keeps using the
originals. The node's templates render from these; nothing here is ever logged.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..files import atomic_write
from .bundle import NodeBundle


@dataclass(frozen=True)
class NodeFiles:
    config_dir: Path = Path("/etc/appliance")
    agent_dir: Path = Path("/etc/neutron/tls")

    @property
    def credentials(self) -> Path:
        return self.config_dir / "node.yaml"

    @property
    def tls_dir(self) -> Path:
        return self.config_dir / "tls"

    @property
    def key(self) -> Path:
        return self.tls_dir / "node.key"

    @property
    def certificate(self) -> Path:
        return self.tls_dir / "node.crt"

    @property
    def ca(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def agent_key(self) -> Path:
        return self.agent_dir / self.key.name

    @property
    def agent_certificate(self) -> Path:
        return self.agent_dir / self.certificate.name

    @property
    def agent_ca(self) -> Path:
        return self.agent_dir / self.ca.name


def write_key(files: NodeFiles, key_pem: bytes) -> None:
    """The node's private key, 0600, before its request leaves the node."""
    _dirs(files)
    atomic_write(files.key, key_pem.decode("ascii"), mode=0o600)


def write_bundle(files: NodeFiles, bundle: NodeBundle) -> list[Path]:
    """Write what ``bundle`` holds; returns the paths written."""
    _dirs(files)
    fields = {k: v for k, v in asdict(bundle).items() if not k.endswith("_pem")}
    atomic_write(files.credentials, yaml.safe_dump(fields, default_flow_style=False, sort_keys=True), mode=0o600)
    atomic_write(files.certificate, bundle.certificate_pem, mode=0o644)
    atomic_write(files.ca, bundle.ca_pem, mode=0o644)
    return [files.credentials, files.certificate, files.ca]


def share_with_agent(files: NodeFiles, group: int) -> list[Path]:
    """Copy the node's key (0640) and certificates (0644) into ``files.agent_dir`` (0750),
    owned by this process's user (root on the node) and group ``group`` (neutron's gid), for
    the OVN metadata agent; written again each time, so the copies follow the originals.
    Returns the paths written. OSError when an original is missing (the join wrote them)."""
    owner = (os.geteuid(), group)
    files.agent_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    # mkdir's mode is subject to the umask and does nothing to a directory already there.
    os.chown(files.agent_dir, *owner)
    os.chmod(files.agent_dir, 0o750)
    written = []
    for source, target, mode in ((files.key, files.agent_key, 0o640), (files.certificate, files.agent_certificate, 0o644),
                                 (files.ca, files.agent_ca, 0o644)):
        atomic_write(target, source.read_text(encoding="ascii"), mode=mode, owner=owner)
        written.append(target)
    return written


def _dirs(files: NodeFiles) -> None:
    files.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
