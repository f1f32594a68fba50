"""manifest.json: what was built, from what, how long each stage took."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str


@dataclass(frozen=True)
class Artifact:
    name: str
    size: int  # apparent size in bytes
    allocated: int  # bytes on disk (raw images are sparse)
    sha256: str


def sha256_of(path: Path, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_artifact(path: Path) -> Artifact:
    stat = path.stat()
    return Artifact(name=path.name, size=stat.st_size, allocated=stat.st_blocks * 512, sha256=sha256_of(path))


def parse_package_list(text: str) -> list[Package]:
    """Lines of 'name<TAB>version<TAB>arch' as the appliance-manifest element writes them."""
    packages = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not all(fields):
            raise ValueError(f"package list line {number}: expected name, version and architecture, got {line!r}")
        packages.append(Package(*fields))
    return sorted(packages, key=lambda p: (p.name, p.architecture))


def build_manifest(*, profile: str, artifacts: list[Artifact], packages: list[Package],
                   stages: dict[str, float], inputs: dict[str, str] | None = None,
                   extra: dict | None = None) -> dict:
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "profile": profile,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_host": {"kernel": platform.release(), "machine": platform.machine()},
        "artifacts": {a.name: {k: v for k, v in asdict(a).items() if k != "name"} for a in artifacts},
        "stages": {name: round(seconds, 1) for name, seconds in stages.items()},
        "total_seconds": round(sum(stages.values()), 1),
        "inputs": dict(inputs or {}),
        "packages": [asdict(p) for p in packages],
        "package_count": len(packages),
    }
    manifest.update(extra or {})
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
