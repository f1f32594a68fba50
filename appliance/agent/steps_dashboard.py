"""The appliance CA, the dashboard's certificate, and switching the dashboard off.

Horizon itself is configured like every service (rendered files, its unit started with the
OpenStack servers); what it needs beyond that is a certificate, made here before Apache
starts, and, where the site config turns it off, its units kept masked. The CA that signs
that certificate is made whether the dashboard runs or not: the join service and the nodes'
certificates need it too (docs/scale-out.md, "Certificates").
"""

from __future__ import annotations

from ..tls import TlsPaths, ca_fits, certificates_fit, ensure_ca, ensure_certificates, fingerprint
from .context import AgentContext
from .system import log, systemctl, unit_is_active

# The profile service that serves the dashboard over HTTPS.
DASHBOARD_SERVICE = "dashboard"


def dashboard_on(ctx: AgentContext) -> bool:
    return ctx.active_profile.has_service(DASHBOARD_SERVICE)


def certificates(ctx: AgentContext, paths: TlsPaths = TlsPaths()) -> None:
    """The appliance's CA, always, and while the dashboard runs its certificate for this
    host's name and management address: made when missing, issued again when they no longer
    fit (appliance/tls.py). A running Apache is reloaded to serve a new certificate."""
    facts = ctx.facts
    if not dashboard_on(ctx):
        # `add-node` refuses without a CA: a site without the dashboard may still take nodes.
        for line in ensure_ca(paths, facts.hostname)[2]:
            log(f"appliance CA: {line}")
        log("dashboard: turned off by the site config (dashboard.enabled: false); no certificate made for it")
        return
    done = ensure_certificates(paths, facts.hostname, facts.management_ip)
    for line in done:
        log(f"dashboard TLS: {line}")
    units = list(ctx.profile.service(DASHBOARD_SERVICE).units)
    if done and any(unit_is_active(u) for u in units):
        systemctl("reload-or-restart", *units)


def certificates_done(ctx: AgentContext, paths: TlsPaths = TlsPaths()) -> bool:
    if not dashboard_on(ctx):
        return ca_fits(paths)
    facts = ctx.facts
    return certificates_fit(paths, facts.hostname, facts.management_ip)


def switched_off_units(ctx: AgentContext) -> list[str]:
    """Units of the services the site turns off that no service it runs shares."""
    running = set(ctx.active_profile.units())
    return [u for u in ctx.profile.units() if u not in running]


def keep_switched_off(ctx: AgentContext) -> None:
    """Stop and mask what the site turns off: on a first boot they are masked already (the
    image holds every unit back); after `dashboard: {enabled: false}` on a running appliance
    and `appliance run --again` they stop here."""
    units = switched_off_units(ctx)
    if units:
        systemctl("mask", "--now", *units, check=False)
        log(f"turned off by the site config: {', '.join(units)}")


def dashboard_hint(ctx: AgentContext, paths: TlsPaths = TlsPaths()) -> list[str]:
    """Where the dashboard answers and how to trust it (status and the login message); []
    when it is off or its CA is not made yet."""
    if not dashboard_on(ctx) or not paths.ca_cert.exists():
        return []
    facts = ctx.facts
    webroot = ctx.profile.settings.get("dashboard_webroot", "/")
    return [f"  dashboard: https://{facts.management_ip}{webroot} (log in as lxc or admin; /root/rc.lxc has the password)",
            f"  its CA:    https://{facts.management_ip}/appliance-ca.crt, here {paths.ca_cert}",
            f"             SHA-256 {fingerprint(paths.ca_cert.read_bytes())}"]
