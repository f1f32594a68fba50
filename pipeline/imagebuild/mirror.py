"""Fail in seconds, not after a long build, when the configured mirror does not answer."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

from appliance.errors import ApplianceError


@dataclass(frozen=True)
class MirrorCheck:
    url: str  # the mirror's base URL, as configured
    suite: str  # e.g. bookworm, xenial, xenial-updates/newton
    variable: str  # what the operator sets to point at another mirror

    @property
    def release_url(self) -> str:
        return f"{self.url.rstrip('/')}/dists/{self.suite}/Release"


def check_mirror(check: MirrorCheck, timeout: float = 5.0) -> None:
    """HEAD dists/<suite>/Release; anything but a 2xx/3xx within `timeout` is an error."""
    request = urllib.request.Request(check.release_url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, socket.timeout, TimeoutError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
    else:
        if status < 400:
            return
        reason = f"HTTP {status}"
    raise ApplianceError(
        f"mirror check failed: {check.release_url} did not answer ({reason}, timeout {timeout:g} s); "
        f"set {check.variable} to a reachable mirror"
    )
