"""Rendering the overlay templates into the files the appliance writes.

Rendering happens entirely in memory first; only when every template rendered is anything
written, so a bad template or value never leaves a half-written tree behind.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .errors import ApplianceError
from .files import atomic_write
from .profiles import ConfigFile, Profile
from .site import SiteConfig
from .tls import TlsPaths

REPO_OVERLAYS = Path(__file__).resolve().parent.parent / "overlays"
INSTALLED_OVERLAYS = Path("/usr/share/appliance/overlays")

# Documentation addresses (RFC 5737) stand in for host facts that only the appliance knows.
PREVIEW_HOSTNAME = "controller"
PREVIEW_IP = "192.0.2.10"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class HostFacts:
    """What is true of the machine the files are for."""

    hostname: str
    management_ip: str
    overlay_ip: str
    # How many times longer than on real hardware a bound of the appliance must allow: 1 on
    # hardware, KVM and in a container; the site's timeouts.scale on slower hosts.
    patience: float = 1.0
    # Open vSwitch datapath of an OVS-based network backend, chosen once at first boot:
    # "system" (the kernel's openvswitch module) or "netdev" (userspace); "" without OVS.
    datapath: str = ""

    @classmethod
    def from_site(cls, site: SiteConfig, *, hostname: str = PREVIEW_HOSTNAME,
                  management_ip: str = PREVIEW_IP, patience: float = 1.0, datapath: str = "") -> "HostFacts":
        """Site values win; the keyword arguments are what was detected (or a preview)."""
        ip = site.management_ip or management_ip
        return cls(hostname=site.hostname or hostname, management_ip=ip, overlay_ip=site.overlay_ip or ip,
                   patience=patience, datapath=datapath)


@dataclass(frozen=True)
class RenderedFile:
    spec: ConfigFile
    content: str


def overlay_dir() -> Path:
    for candidate in (Path(os.environ.get("APPLIANCE_OVERLAYS", "")), REPO_OVERLAYS, INSTALLED_OVERLAYS):
        if str(candidate) not in ("", ".") and candidate.is_dir():
            return candidate
    raise ApplianceError(f"no overlay templates found (looked in {REPO_OVERLAYS} and {INSTALLED_OVERLAYS})")


def rabbitmq_password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256`` form, as definitions files carry it:
    base64(salt ‖ SHA-256(salt ‖ UTF-8 password)) with a 4-byte salt (RabbitMQ docs,
    "Credentials and Passwords", computing a password hash). The salt is derived from the
    password, not drawn at random, so rendering twice gives the same file (the configs step
    re-renders on every run and rewrites only what changed); the password is a generated
    random secret, so a per-render salt would add nothing."""
    secret = password.encode("utf-8")
    salt = hashlib.sha256(b"appliance rabbitmq salt\0" + secret).digest()[:4]
    return base64.b64encode(salt + hashlib.sha256(salt + secret).digest()).decode("ascii")


def template_context(profile: Profile, site: SiteConfig, host: HostFacts, secrets: dict[str, str],
                     node: object | None = None, *, members: bool = False) -> dict:
    """What every template sees. ``node``: on a compute node, its configuration from the join
    (cluster.nodeconf.NodeConfig), which the role's node templates render from; a controller
    has none, and a template that asks for it fails naming the missing bundle. ``members``:
    a controller with a node joining or joined, whose ``nodes:`` ports listen on the
    management address too (docs/scale-out.md, "Listeners")."""
    controller = host.hostname
    identity = profile.identity
    public_url = f"http://{controller}:{identity.public_port}"
    admin_url = f"http://{controller}:{identity.admin_port}"

    def database_url(service_name: str, database: str | None = None) -> str:
        svc = profile.service(service_name)
        password = secrets[f"{svc.db_user}_db_password"]
        host = client_host("mariadb", 3306)
        return f"mysql+pymysql://{svc.db_user}:{password}@{host}/{database or svc.databases[0]}"

    def bind(service_name: str, port: int) -> str:
        """The declared address class of a service's port (loopback, management, any)."""
        for declared in profile.service(service_name).ports:
            if declared.port == port:
                return declared.bind
        raise jinja2.UndefinedError(f"profile {profile.name}: service {service_name} declares no port {port}")

    def listen_address(service_name: str, port: int) -> str:
        """The address a server binds for a declared port."""
        return {"loopback": LOOPBACK, "management": host.management_ip, "any": "0.0.0.0"}[bind(service_name, port)]

    def listen_addresses(service_name: str, port: int) -> list[str]:
        """Every address a server binds for a declared port: its own, and the management
        address too for a port the nodes reach once there are members."""
        own = listen_address(service_name, port)
        declared = next(p for p in profile.service(service_name).ports if p.port == port)
        wider = declared.nodes and members and own != host.management_ip and own != "0.0.0.0"
        return [own, host.management_ip] if wider else [own]

    def client_host(service_name: str, port: int) -> str:
        """What a client on the appliance connects to: loopback, or the host name, which
        /etc/hosts maps to the management address."""
        return LOOPBACK if bind(service_name, port) == "loopback" else controller

    memcached_port = profile.service("memcached").ports[0].port if profile.has_service("memcached") else 11211
    return {
        "profile": profile,
        "bind": bind,
        "listen_address": listen_address,
        "listen_addresses": listen_addresses,
        "client_host": client_host,
        "settings": profile.settings,
        "instance_id_map": profile.instance_id_map,
        "site": site,
        "host": host,
        "secrets": secrets,
        "controller": controller,
        "keystone": {
            "public_url": public_url,
            "admin_url": admin_url,
            "uri_option": identity.authtoken_uri_option,
            "api_version": identity.api_version,
        },
        # Every memcached client (Keystone, keystonemiddleware in each API) uses this.
        "memcached_servers": f"{client_host('memcached', memcached_port)}:{memcached_port}"
        if profile.has_service("memcached") else f"{controller}:11211",
        # A compute node renders with none of the controller's secrets (its own credentials
        # are ``node``'s): a template that asks for the controller's RPC URL there fails.
        "transport_url": f"rabbit://openstack:{secrets['rabbitmq_password']}@{client_host('rabbitmq', 5672)}"
        if "rabbitmq_password" in secrets and profile.has_service("rabbitmq") else jinja2.StrictUndefined(
            hint="a compute node has no controller secrets; its RPC URL is node.transport_url", name="transport_url"),
        "rabbitmq_password_hash": rabbitmq_password_hash,
        "database_url": database_url,
        # Where the dashboard's CA and certificate live (made at first boot, not rendered).
        "tls": TlsPaths(),
        "node": node if node is not None else jinja2.StrictUndefined(
            hint="a compute node's files are rendered from its join bundle (node.yaml), and there is none",
            name="node"),
    }


def _environment(templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_files(profile: Profile, site: SiteConfig, host: HostFacts, secrets: dict[str, str],
                 templates: Path | None = None, *, node: object | None = None,
                 members: bool = False) -> list[RenderedFile]:
    """Every file of ``profile`` this site runs, rendered in memory (``node``, ``members``:
    see template_context). ApplianceError naming the template for one that fails."""
    env = _environment(templates or overlay_dir())
    context = template_context(profile, site, host, secrets, node, members=members)
    rendered = []
    # Only the services this site runs: a switched-off service writes nothing.
    for spec in profile.active(site).files():
        try:
            content = env.get_template(spec.template).render(context, file=spec.vars)
        except jinja2.TemplateNotFound:
            raise ApplianceError(f"profile {profile.name}: template {spec.template} for {spec.path} does not exist") from None
        except jinja2.TemplateError as exc:
            raise ApplianceError(f"template {spec.template}: {exc}") from None
        rendered.append(RenderedFile(spec=spec, content=content))
    return rendered


def write_files(files: list[RenderedFile], root: Path, *, set_owner: bool = False) -> list[Path]:
    """Write rendered files under ``root`` with their modes (and owners when asked).

    Each file is written to a temporary name with its final mode and moved into place, so
    a secret-bearing file is never readable by others, not even briefly.
    """
    written = []
    for item in files:
        target = root / item.spec.path.lstrip("/")
        atomic_write(target, item.content, mode=item.spec.mode_bits, owner=_ids(item.spec) if set_owner else None)
        written.append(target)
    return written


def _ids(spec: ConfigFile) -> tuple[int, int]:
    import grp
    import pwd

    try:
        return pwd.getpwnam(spec.owner).pw_uid, grp.getgrnam(spec.group).gr_gid
    except KeyError as exc:
        raise ApplianceError(f"{spec.path}: owner {spec.owner}:{spec.group} does not exist on this host") from exc


def render_tree(profile: Profile, site: SiteConfig, out_dir: Path, *, secrets: dict[str, str],
                host: HostFacts | None = None) -> list[Path]:
    """Render every file of the profile into ``out_dir`` as it will appear on the host."""
    files = render_files(profile, site, host or HostFacts.from_site(site), secrets)
    return write_files(files, out_dir)


def render_site(profile: Profile, site_path: Path | None, out_dir: Path) -> list[Path]:
    """`invoke render`: validate the site, then render with placeholder secrets.

    Secrets the site fixes are used as given; the rest are obvious placeholders, because
    real secrets are generated on the appliance at first boot. A site that joins a cloud
    (``join``) renders the files of the role it joins as.
    """
    from .credentials import placeholder_secrets
    from .roles import profile_for_role
    from .sitefile import JOIN_ROLE, load_site

    site = load_site(site_path, profile)
    node = None
    if site.join is not None:
        from .cluster.nodeconf import preview
        from .site_checks import join_token

        # What the machine that site describes writes: a node's files, not a controller's,
        # with placeholders where the controller's answer to its join will be.
        profile = profile_for_role(profile, JOIN_ROLE)
        token = join_token(site, str(site_path), site_path.parent if site_path else None)
        node = preview(token.name, token.host)
    secrets = {**placeholder_secrets(profile), **site.secrets}
    files = render_files(profile, site, HostFacts.from_site(site, hostname=node.node if node else PREVIEW_HOSTNAME),
                         secrets, node=node)
    return write_files(files, out_dir)
