"""A NoCloud seed volume, as an operator hands a site config to a VM: a FAT filesystem
labelled CIDATA holding ``meta-data``, ``user-data`` and ``appliance.yaml`` (cloud-init's
NoCloud datasource names the volume "cidata"/"CIDATA" and the first two files; the agent
reads ``appliance.yaml`` from it, see appliance/agent/steps_host.py SEED_LABELS).

Made with mkfs.vfat and mtools' mcopy on a plain file: no loop device, no mount.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

LABEL = "CIDATA"
SIZE_KIB = 1024  # plenty for a site config (at most 256 KiB) and FAT's own structures


def harness_site(site_yaml: str | None, root_key: str, timeout_scale: float | None = None) -> str:
    """The site config the VM gets: the operator's (or an empty one) with ``root_key`` added
    to ``root_authorized_keys`` (kept once), so the harness can log in as root, and, when
    given, ``timeout_scale`` as ``timeouts.scale`` unless the operator set one. The
    mapping's other fields are left as given; the agent validates the whole file."""
    data = yaml.safe_load(site_yaml) if site_yaml else None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError("the site config is not a mapping")
    keys = list(data.get("root_authorized_keys") or [])
    if root_key.strip() not in [k.strip() for k in keys if isinstance(k, str)]:
        keys.append(root_key.strip())
    data["root_authorized_keys"] = keys
    if timeout_scale is not None:
        timeouts = data.get("timeouts")
        if timeouts is None:
            data["timeouts"] = timeouts = {}
        if isinstance(timeouts, dict):
            timeouts.setdefault("scale", timeout_scale)
    return yaml.safe_dump(data, sort_keys=False)


def seed_files(site_yaml: str, instance_id: str, hostname: str | None = None) -> dict[str, str]:
    """The volume's files. meta-data's instance-id is what NoCloud requires; user-data is an
    empty cloud-config (the appliance reads appliance.yaml, not user-data)."""
    meta = f"instance-id: {instance_id}\n" + (f"local-hostname: {hostname}\n" if hostname else "")
    return {"meta-data": meta, "user-data": "#cloud-config\n{}\n", "appliance.yaml": site_yaml}


def write_seed(path: Path, files: dict[str, str]) -> Path:
    """Write a FAT volume labelled CIDATA holding ``files`` to ``path`` (replaced)."""
    path.unlink(missing_ok=True)
    staging = path.with_name(path.name + ".d")
    staging.mkdir(mode=0o700, exist_ok=True)
    try:
        sources = []
        for name, text in files.items():
            source = staging / name
            source.write_text(text, encoding="utf-8")
            source.chmod(0o600)  # the site config may hold secrets
            sources.append(str(source))
        subprocess.run(["mkfs.vfat", "-n", LABEL, "-C", str(path), str(SIZE_KIB)], check=True, capture_output=True)
        subprocess.run(["mcopy", "-i", str(path), *sources, "::"], check=True, capture_output=True)
        path.chmod(0o600)
    finally:
        for source in staging.iterdir():
            source.unlink()
        staging.rmdir()
    return path
