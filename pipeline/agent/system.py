"""Running commands on the appliance, and waiting for things to come up.

Commands are logged with their arguments, which is why no secret ever goes on a command
line: secrets travel through stdin or the environment.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from typing import Callable

from ..errors import ApplianceError

LOG_PATH = "/var/log/appliance/firstboot.log"


def log_path() -> str:
    # The build's migrations log elsewhere: the image must not ship a first-boot log.
    return os.environ.get("APPLIANCE_AGENT_LOG") or LOG_PATH


def log(line: str) -> None:
    path = log_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def run(cmd: list[str], *, user: str | None = None, stdin: str | None = None,
        env: dict[str, str] | None = None, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd`` (as ``user`` when given); its output goes to the agent's log."""
    full = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
    log(f"$ {' '.join(full)}")
    merged_env = {**os.environ, **(env or {})}
    try:
        result = subprocess.run(full, input=stdin, env=merged_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ApplianceError(f"{' '.join(cmd[:3])} did not finish within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise ApplianceError(f"{cmd[0]} is not installed") from None
    if result.stdout.strip():
        log(result.stdout.rstrip())
    if result.stderr.strip():
        log(result.stderr.rstrip())
    if check and result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise ApplianceError(f"{' '.join(cmd[:3])} exited {result.returncode}: {last[0][:300]}")
    return result


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["systemctl", *args], check=check, timeout=300)


def unit_is_active(unit: str) -> bool:
    return subprocess.run(["systemctl", "is-active", "--quiet", unit]).returncode == 0


def enable_and_start(units: list[str], *, timeout: float = 900) -> None:
    """Unmask, enable and start units, then wait until every one is active.

    They are started together without blocking so systemd overlaps their start-up; the
    wait is ours, so a slow start on a loaded host is waited for, not failed.
    """
    systemctl("unmask", *units, check=False)
    systemctl("enable", *units)
    systemctl("start", "--no-block", *units)

    def states() -> dict[str, str]:
        out = subprocess.run(["systemctl", "is-active", *units], capture_output=True, text=True).stdout.split()
        return dict(zip(units, out))

    start = time.monotonic()
    while True:
        current = states()
        waiting = {u: s for u, s in current.items() if s != "active"}
        if not waiting:
            return
        if time.monotonic() - start > timeout:
            detail = ", ".join(f"{u} {s}" for u, s in waiting.items())
            raise ApplianceError(f"units not active after {timeout:.0f} s: {detail} (see journalctl -u UNIT)")
        time.sleep(1)


def wait_for(what: str, probe: Callable[[], bool], *, timeout: float, interval: float = 1.0) -> float:
    """Poll ``probe`` until it is true; return the seconds waited or raise naming ``what``."""
    start = time.monotonic()
    last_error = ""
    while True:
        try:
            if probe():
                return time.monotonic() - start
        except Exception as exc:  # a probe may fail while the thing starts up
            last_error = f" (last error: {exc})"
        if time.monotonic() - start > timeout:
            raise ApplianceError(f"{what} not ready after {timeout:.0f} s{last_error}")
        time.sleep(interval)


def http_answers(url: str) -> bool:
    """True once anything answers HTTP at ``url`` (an error status counts as an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
