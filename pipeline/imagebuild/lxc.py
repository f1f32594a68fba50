"""The LXC guest root filesystem: a separate, cached diskimage-builder build.

Its inputs are few (the lxc-guest-* elements, the release, the mirror, sizes), so a hash
of them decides whether it is built at all: a rebuild after a template-only change reuses
the cached image.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from .dib import run_disk_image_create
from .settings import ELEMENTS_DIR, LXC_GUEST_ELEMENTS, BuildSettings

IMAGE_NAME = "lxc-rootfs.img"


def tree_digest(paths: Iterable[Path], digest=None):
    """Feed every file below paths (relative name, mode, content) into digest, in a stable order."""
    digest = digest or hashlib.sha256()
    for root in sorted(paths):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
            digest.update(oct(path.stat().st_mode & 0o777).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest


def inputs_key(element_dirs: Iterable[Path], env: Mapping[str, str], *, dib_version: str, zstd_level: int) -> str:
    """Stable hash of everything that changes the guest image; short enough for a path."""
    digest = tree_digest(element_dirs)
    relevant = {k: v for k, v in env.items() if k.startswith("DIB_") and "CACHE" not in k}
    for key in sorted(relevant):
        digest.update(f"{key}={relevant[key]}\n".encode())
    digest.update(f"dib={dib_version}\nzstd={zstd_level}\n".encode())
    return digest.hexdigest()[:20]


@dataclass(frozen=True)
class LxcRootfs:
    image: Path  # raw ext4, sparse
    compressed: Path  # .zst of it
    key: str
    reused: bool


def guest_element_dirs(elements_dir: Path = ELEMENTS_DIR) -> list[Path]:
    dirs = []
    for name in LXC_GUEST_ELEMENTS + ("lxc-guest-block-device",):
        dirs.append(elements_dir / name)
    return dirs


def build_lxc_rootfs(settings: BuildSettings, env: Mapping[str, str], log_path: Path, *, key: str) -> LxcRootfs:
    cache = settings.cache_dir / "lxc-rootfs"
    slot = cache / key
    image, compressed = slot / IMAGE_NAME, slot / f"{IMAGE_NAME}.zst"
    if image.is_file() and compressed.is_file():
        return LxcRootfs(image, compressed, key, reused=True)

    work = settings.work_dir / "lxc-rootfs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    args = ["-n", "-t", "raw", "-o", str(work / "lxc-rootfs"), *LXC_GUEST_ELEMENTS, *settings.lxc_extra_elements]
    run_disk_image_create(args, env, log_path)

    staging = cache / f".{key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (work / "lxc-rootfs.raw").rename(staging / IMAGE_NAME)
    # Multi-threaded, high level: compressed once per input change, shipped in every image.
    subprocess.run(["zstd", "-q", "-T0", f"-{settings.zstd_level}", str(staging / IMAGE_NAME), "-o", str(staging / f"{IMAGE_NAME}.zst")],
                   check=True)
    # Only one guest image is worth keeping: its inputs changed for a reason.
    for old in cache.iterdir():
        if old != staging:
            shutil.rmtree(old, ignore_errors=True)
    staging.rename(slot)
    shutil.rmtree(work, ignore_errors=True)
    return LxcRootfs(image, compressed, key, reused=False)


def copy_sparse(source: Path, target: Path) -> None:
    """Copy keeping holes (the guest image is mostly empty); atomic for the reader."""
    tmp = target.with_name(target.name + ".tmp")
    subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(source), str(tmp)], check=True)
    tmp.rename(target)
