"""`appliance measure` on a booted appliance, through the boot harness's one interface.

``measure(target, *args)`` runs ``python3 -m appliance measure ARGS`` on a BootTarget (container
or VM) and returns its JSON lines as mappings. Errors: ApplianceError naming the measurement,
the harness kind, the exit code and the last lines of its stderr (a traceback's last frame and
its error), so a failure on the appliance can be read from the bench's own output.
"""

from __future__ import annotations

import json
import subprocess

from appliance.errors import ApplianceError

# How much of a failed measurement's stderr the error carries: a traceback's last frame
# (File ..., line N / the code) and the exception.
STDERR_LINES = 3


def parse(result: subprocess.CompletedProcess, args: tuple[str, ...] | list[str], where: str) -> list[dict]:
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        tail = [line.strip() for line in result.stderr.strip().splitlines()[-STDERR_LINES:]] or ["no output"]
        raise ApplianceError(f"appliance measure {' '.join(args)} failed in the {where} (exit {result.returncode}): "
                             + " | ".join(tail))
    return lines


def measure(target, *args: str, timeout: float = 1800) -> list[dict]:
    """``target``: a pipeline.harness.target.BootTarget that is running."""
    result = target.run(["python3", "-m", "appliance", "measure", *args], timeout=timeout)
    return parse(result, args, target.kind)


def memory_with_units_stopped(target, units: list[str], *, settle_s: float, timeout: float = 1800) -> dict:
    """The appliance's idle memory (``appliance measure memory``) with ``units`` stopped for
    ``settle_s`` seconds, then started again: what the appliance costs without them (the
    dashboard's Apache and WSGI process). Errors: ApplianceError as ``measure``'s, and when a
    unit does not stop or start again (systemctl's exit code and stderr)."""
    import time

    def systemctl(verb: str) -> None:
        result = target.run(["systemctl", verb, *units], timeout=300)
        if result.returncode != 0:
            raise ApplianceError(f"systemctl {verb} {' '.join(units)} failed in the {target.kind} "
                                 f"(exit {result.returncode}): {result.stderr.strip()[-300:]}")

    systemctl("stop")
    try:
        time.sleep(settle_s)
        return measure(target, "memory", timeout=timeout)[0]
    finally:
        systemctl("start")
