"""`python -m pipeline.smoke --target SPEC`: host checks, then the API workflow."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .host_checks import FACTS_PATH, run_host_checks
from .report import Report, Result


def target_patience(host) -> float:
    """The target's timeout scale as its first boot recorded it (host fact ``patience``, the
    site's ``timeouts.scale``; 1 when not recorded): the workflow's waits scale by it inside
    the appliance, so its bound here must too."""
    result = host.run(f"cat {FACTS_PATH}")
    try:
        return float(json.loads(result.stdout).get("patience", 1.0)) if result.rc == 0 else 1.0
    except (ValueError, AttributeError):
        return 1.0


def run_api_workflow(host, report: Report, timeout: int = 1200, outbound_probe: str | None = None) -> None:
    """Run the appliance's own `appliance selftest api` over the connection, for at most
    ``timeout`` seconds times the target's slowness; one Result per JSON line it prints."""
    start = time.monotonic()
    args = f" --outbound-probe {shlex.quote(outbound_probe)}" if outbound_probe else ""
    bound = round(timeout * target_patience(host))
    result = host.run(f"timeout {bound} python3 -m appliance selftest api{args}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    for line in lines:
        data = json.loads(line)
        report.add(Result(data["name"], data["passed"], data["seconds"], data["detail"]))
    if result.rc != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        report.add(Result("API workflow ran to the end", False, time.monotonic() - start, f"exit {result.rc}: {tail}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smoke", description="Check a booted appliance.")
    parser.add_argument("--target", required=True, help="testinfra host spec, e.g. ssh://root@cloud1")
    parser.add_argument("--identity", help="SSH private key for the target")
    parser.add_argument("--host-only", action="store_true", help="skip the API workflow")
    parser.add_argument("--outbound-probe", metavar="HOST:PORT",
                        help="a TCP service that answers with the source address it saw: checks outbound NAT")
    args = parser.parse_args(argv)

    import testinfra

    options = {}
    if args.identity:
        options["ssh_identity_file"] = args.identity
    options["ssh_extra_args"] = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    with tempfile.TemporaryDirectory(prefix="smoke-ssh-") as control_dir:
        control = Path(control_dir) / "ssh.sock"
        if args.target.startswith("ssh://"):
            # One connection for the whole run (testinfra's ControlMaster=auto needs a path to
            # share it): a VM under TCG spends seconds of CPU on every new SSH connection.
            options["controlpath"] = str(control)
        host = testinfra.get_host(args.target, **options)
        report = Report()
        print(f"smoke: {args.target}", flush=True)
        try:
            if report.check("target reachable", lambda: host.check_output("true") or None):
                run_host_checks(host, report)
                if not args.host_only:
                    run_api_workflow(host, report, outbound_probe=args.outbound_probe)
        finally:
            if control.exists():
                subprocess.run(["ssh", "-o", f"ControlPath={control}", "-O", "exit", "smoke-target"],
                               capture_output=True, timeout=30)
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
