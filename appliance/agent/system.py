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

# Every wait of the agent is bounded, so a hang ends in a clear error; the bounds are what a
# server needs, times the site config's timeouts.scale (default 1), which the agent sets
# here as soon as it has read the site config (AgentContext.site).
_TIMEOUT_SCALE = [1.0]


def set_patience(scale: float) -> None:
    """Use ``scale`` (the site's ``timeouts.scale``, >= 1) for every bound from now on."""
    _TIMEOUT_SCALE[0] = float(scale)


def patience() -> float:
    """The factor for every timeout of the agent: the site's ``timeouts.scale``."""
    return _TIMEOUT_SCALE[0]


def stretched(seconds: float) -> float:
    """``seconds`` times patience(): the bound for a wait the agent hands to a library
    (openstacksdk's api_timeout, its wait-for-status timeouts) rather than to run() or
    wait_for(), which stretch their own."""
    return seconds * patience()


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
    timeout *= patience()
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


# A socket-activated service (libvirtd on Debian: libvirtd.socket, --timeout 120 in
# /etc/default/libvirtd) may stop when idle and is started again by its next client; with
# its sockets listening it is as available as when it runs.
SOCKET_IDLE = "idle (socket listening)"
UP_STATES = ("active", SOCKET_IDLE)


def classify(active_state: str, sockets: dict[str, str]) -> str:
    """A unit's effective state from its ActiveState and the ActiveState of each socket
    that triggers it (systemd's TriggeredBy; masked ones such as libvirtd-tcp.socket are
    listed too, inactive, so one listening socket is enough)."""
    if active_state == "inactive" and any(s == "active" for s in sockets.values()):
        return SOCKET_IDLE
    return active_state


def _show(units: list[str], *props: str) -> list[dict[str, str]]:
    """`systemctl show` of several units: one dict of ``props`` per unit, in order."""
    args = [arg for prop in props for arg in ("-p", prop)]
    out = subprocess.run(["systemctl", "show", *args, *units], capture_output=True, text=True).stdout
    blocks = []
    for block in out.strip("\n").split("\n\n"):
        blocks.append(dict(line.split("=", 1) for line in block.splitlines() if "=" in line))
    return blocks + [{}] * (len(units) - len(blocks))


def unit_main_pid(unit: str) -> int | None:
    """The PID of the unit's main process (systemd's MainPID), None when it does not run."""
    pid = _show([unit], "MainPID")[0].get("MainPID", "0")
    return int(pid) if pid.isdigit() and pid != "0" else None


def unit_states(units: list[str]) -> dict[str, str]:
    """Effective state of each unit: active, SOCKET_IDLE, failed, activating, inactive ..."""
    if not units:
        return {}
    shown = _show(units, "ActiveState", "TriggeredBy")
    triggers = {u: [t for t in info.get("TriggeredBy", "").split() if t.endswith(".socket")]
                for u, info in zip(units, shown)}
    sockets = sorted({t for ts in triggers.values() for t in ts})
    socket_state = {s: info.get("ActiveState", "unknown") for s, info in zip(sockets, _show(sockets, "ActiveState"))} \
        if sockets else {}
    return {u: classify(info.get("ActiveState", "unknown"), {t: socket_state[t] for t in triggers[u]})
            for u, info in zip(units, shown)}


def unit_started_at(units: list[str]) -> dict[str, float | None]:
    """When each unit last became active (epoch seconds), None for one not active."""
    if not units:
        return {}
    shown = _show(units, "ActiveState", "ActiveEnterTimestampMonotonic")
    # Monotonic microseconds since boot, turned into wall-clock time here: `systemctl
    # show` prints the wall-clock stamp in the local time zone, to the second only.
    offset = time.time() - time.monotonic()
    started = {}
    for unit, info in zip(units, shown):
        mono = info.get("ActiveEnterTimestampMonotonic", "0")
        active = info.get("ActiveState") == "active" and mono.isdigit() and mono != "0"
        started[unit] = offset + int(mono) / 1e6 if active else None
    return started


def journal_tail(unit: str, lines: int = 5) -> str:
    """The unit's last log lines, joined into one line (for a one-line error)."""
    out = subprocess.run(["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat"],
                         capture_output=True, text=True).stdout
    return " | ".join(line.strip() for line in out.splitlines() if line.strip())[-600:] or "no journal lines"


def wait_units(units: list[str], *, timeout: float, states: Callable[[list[str]], dict[str, str]] = unit_states,
               tail: Callable[[str], str] = journal_tail, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until every unit is up (UP_STATES). A unit that has *failed* ends the wait at
    once with its last log lines: waiting longer cannot help. A unit restarting after a
    crash (Restart=on-failure) is "activating", not failed, and is waited for."""
    start = clock()
    while True:
        current = states(units)
        failed = [u for u, s in current.items() if s == "failed"]
        if failed:
            raise ApplianceError(f"unit {failed[0]} failed: {tail(failed[0])} (see journalctl -u {failed[0]})")
        waiting = {u: s for u, s in current.items() if s not in UP_STATES}
        if not waiting:
            return
        if clock() - start > timeout:
            detail = ", ".join(f"{u} {s}" for u, s in waiting.items())
            raise ApplianceError(f"units not active after {timeout:.0f} s: {detail} (see journalctl -u UNIT)")
        sleep(1)


def enable_and_start(units: list[str], *, timeout: float = 900) -> None:
    """Unmask, enable (those still disabled) and start units, then wait until every one is
    up (see wait_units).

    The image ships them enabled under a mask (elements/appliance-service-base), so
    normally only the unmask's daemon-reload is left; `systemctl enable` costs another
    reload and, for a unit with a SysV script, Debian's update-rc.d. They are started
    together without blocking so systemd overlaps their start-up; the wait is ours, so a
    slow start on a loaded host is waited for, not failed. A failure left from an earlier
    run is reset first, so "failed" can only mean this start failed. The wait polls every
    patience() seconds: each poll runs systemctl twice, which costs an emulated guest the
    CPU its services are loading with.
    """
    systemctl("unmask", *units, check=False)
    disabled = units_disabled(units)
    if disabled:
        systemctl("enable", *disabled)
    systemctl("reset-failed", *units, check=False)
    systemctl("start", "--no-block", *units)
    wait_units(units, timeout=timeout * patience(), sleep=lambda _: time.sleep(patience()))


def units_disabled(units: list[str]) -> list[str]:
    """The units `systemctl is-enabled` calls "disabled" (one answer line per unit, in order;
    static, indirect, generated and enabled ones need no enabling)."""
    out = subprocess.run(["systemctl", "is-enabled", *units], capture_output=True, text=True).stdout
    return [u for u, state in zip(units, out.splitlines()) if state.strip() == "disabled"]


def wait_for(what: str, probe: Callable[[], bool], *, timeout: float, interval: float = 1.0) -> float:
    """Poll ``probe`` until it is true; return the seconds waited or raise naming ``what``
    (after ``timeout`` seconds times patience())."""
    timeout *= patience()
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
