"""Where a node keeps what it received: each file written whole, with its final mode from the
first byte (``files.atomic_write``), secrets 0600 in the 0700 config directory.

Layout (``config_dir`` is /etc/appliance)::

    config_dir/node.yaml       0600  the bundle's fields but the certificates (users, passwords,
                                     the metadata secret, where the controller is)
    config_dir/tls/node.key    0600  the node's private key, made on the node (by the join)
    config_dir/tls/node.crt    0644  its certificate, CN = the node's name
    config_dir/tls/ca.crt      0644  the appliance CA it trusts

The node's templates render from these; nothing here is ever logged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..files import atomic_write
from .bundle import NodeBundle


@dataclass(frozen=True)
class NodeFiles:
    config_dir: Path = Path("/etc/appliance")

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


def _dirs(files: NodeFiles) -> None:
    files.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
