"""Schema migrations: run once at build time into the image's MariaDB, re-checked at first boot.

Migrating Zed's schemas takes half a minute of a small host's first boot, and nothing in a
schema depends on the host. So the build starts the image's MariaDB in the chroot (no
network: a unix socket only), creates the databases and runs every service's migrations as
a temporary build user that is dropped afterwards. The image then ships migrated databases
and a stamp naming the package versions that migrated them; first boot skips the migrations
while the installed packages still match the stamp, and runs them (each is idempotent)
when they do not, e.g. after an upgrade.

Nova's cell mappings store URLs. They are stored as templates ({username}, {password},
{hostname} ...), which Nova fills from the host's own [database] and transport_url, so no
build-time address or password survives in the image.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..files import atomic_write
from ..profiles import Profile
from .system import run, wait_for

STAMP = Path("/var/lib/appliance/migrated.json")
BUILD_RUN_DIR = Path("/run/appliance-migrate")
BUILD_USER = "appliance_build"

CELL0_URL = "{scheme}://{username}:{password}@{hostname}/nova_cell0?{query}"
CELL1_URL = "{scheme}://{username}:{password}@{hostname}/{path}?{query}"
CELL1_MQ_URL = "{scheme}://{username}:{password}@{hostname}"

# service -> the configuration files its migration command reads on the appliance.
APPLIANCE_CONFIGS = {
    "keystone": ["/etc/keystone/keystone.conf"],
    "glance": ["/etc/glance/glance-api.conf"],
    "placement": ["/etc/placement/placement.conf"],
    "nova": ["/etc/nova/nova.conf"],
    "neutron": ["/etc/neutron/neutron.conf", "/etc/neutron/plugins/ml2/ml2_conf.ini"],
}

Runner = Callable[..., subprocess.CompletedProcess]


def _config_args(files: list[str]) -> list[str]:
    return [arg for f in files for arg in ("--config-file", f)]


def migrate(profile: Profile, configs: dict[str, list[str]], run_as: Callable[[str], str | None],
            runner: Runner = run) -> None:
    """Every service's schema, in dependency order; each command converges."""
    def manage(service: str, tool: str, *args: str) -> subprocess.CompletedProcess:
        return runner([tool, *_config_args(configs[service]), *args], user=run_as(service))

    manage("keystone", "keystone-manage", "db_sync")
    if profile.has_service("glance"):
        manage("glance", "glance-manage", "db_sync")
        metadefs = profile.settings.get("glance_metadefs")
        if metadefs:
            # Glance's metadata definitions (what Horizon's "Update Metadata" dialogs offer):
            # the same rows on every appliance. Namespaces already loaded are skipped (glance
            # db/sqlalchemy/metadata.py), so running it again changes nothing.
            manage("glance", "glance-manage", "db", "load_metadefs", "--path", metadefs)
    if profile.has_service("placement"):
        manage("placement", "placement-manage", "db", "sync")
    manage("nova", "nova-manage", "api_db", "sync")
    if "nova_cell0" in profile.service("nova").databases:
        manage("nova", "nova-manage", "cell_v2", "map_cell0", "--database_connection", CELL0_URL)
        cells = manage("nova", "nova-manage", "cell_v2", "list_cells").stdout
        if " cell1 " not in cells:
            manage("nova", "nova-manage", "cell_v2", "create_cell", "--name=cell1",
                   "--database_connection", CELL1_URL, "--transport-url", CELL1_MQ_URL)
    manage("nova", "nova-manage", "db", "sync")
    manage("neutron", "neutron-db-manage", "upgrade", "head")


def schema_packages(profile: Profile) -> list[str]:
    """The packages whose versions decide the schemas: those of services with databases."""
    return sorted({p for svc in profile.services if svc.databases for p in svc.packages})


def installed_versions(packages: list[str]) -> dict[str, str]:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *packages],
                         capture_output=True, text=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def migrated_at_build(profile: Profile, stamp: Path = STAMP,
                      versions: Callable[[list[str]], dict[str, str]] = installed_versions) -> bool:
    """True when the image's databases were migrated by exactly the installed packages."""
    try:
        recorded = json.loads(stamp.read_text())["packages"]
    except (OSError, ValueError, KeyError):
        return False
    return recorded == versions(schema_packages(profile))


# --- build time -------------------------------------------------------------------------

def _build_configs(profile: Profile, socket: Path, password: str, work: Path) -> dict[str, list[str]]:
    """Minimal configuration files that point each service at the build's MariaDB."""
    def url(database: str) -> str:
        return f"mysql+pymysql://{BUILD_USER}:{password}@localhost/{database}?unix_socket={socket}"

    sections = {
        "keystone": {"database": {"connection": url("keystone")}},
        "glance": {"database": {"connection": url("glance")}},
        "placement": {"placement_database": {"connection": url("placement")}},
        "nova": {
            # create_cell checks the transport URL's syntax; nothing connects to it.
            "DEFAULT": {"transport_url": f"rabbit://{BUILD_USER}:{password}@localhost"},
            "api_database": {"connection": url("nova_api")},
            "database": {"connection": url("nova")},
        },
        "neutron": {
            "DEFAULT": {"core_plugin": "ml2", "service_plugins": "router"},
            "database": {"connection": url("neutron")},
        },
    }
    configs = {}
    for service, content in sections.items():
        path = work / f"{service}.conf"
        lines = []
        for section, options in content.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {value}" for key, value in options.items()]
        atomic_write(path, "\n".join(lines) + "\n", mode=0o600)
        configs[service] = [str(path)]
    return configs


@contextmanager
def build_mariadb(profile: Profile, say: Callable[[str], None] = print) -> Iterator[Path]:
    """The image's MariaDB, on a unix socket only, for as long as the block runs."""
    BUILD_RUN_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(BUILD_RUN_DIR, "mysql", "mysql")
    socket = BUILD_RUN_DIR / "mysqld.sock"
    settings = profile.settings
    cmd = ["mariadbd", "--user=mysql", "--skip-networking", f"--socket={socket}",
           f"--pid-file={BUILD_RUN_DIR / 'mysqld.pid'}", "--skip-log-bin",
           f"--character-set-server={settings.get('mariadb_charset', 'utf8mb4')}",
           f"--collation-server={settings.get('mariadb_collation', 'utf8mb4_general_ci')}"]
    # Its log goes to a file: a pipe nobody reads would stall mariadbd once full.
    server_log = BUILD_RUN_DIR / "mariadbd.log"
    with open(server_log, "w") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("MariaDB in the build chroot", lambda: _connect(socket).close() is None, timeout=120)
        yield socket
    finally:
        try:
            conn = _connect(socket)
            with conn.cursor() as cur:
                cur.execute("SHUTDOWN")
        except Exception:
            server.terminate()
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.returncode not in (0, -15):
            say(f"[migrate] mariadbd exited {server.returncode}: {server_log.read_text()[-500:]}")
        shutil.rmtree(BUILD_RUN_DIR, ignore_errors=True)


def _connect(socket: Path):
    import pymysql

    return pymysql.connect(unix_socket=str(socket), user="root", autocommit=True)


def migrate_at_build(profile: Profile, stamp: Path = STAMP, say: Callable[[str], None] = print) -> None:
    """`appliance migrate-image`: run inside the image chroot by the appliance-migrate element."""
    started = time.monotonic()
    password = secrets.token_hex(16)
    databases = sorted({db for svc in profile.services for db in svc.databases})
    with build_mariadb(profile, say) as socket, tempfile.TemporaryDirectory() as work:
        log = Path(work) / "migrate.log"
        os.environ["APPLIANCE_AGENT_LOG"] = str(log)
        conn = _connect(socket)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER IF NOT EXISTS %s@'localhost' IDENTIFIED BY %s", (BUILD_USER, password))
                for name in databases:
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
                    cur.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@'localhost'", (BUILD_USER,))
            migrate(profile, _build_configs(profile, socket, password, Path(work)), run_as=lambda _svc: None)
        finally:
            with conn.cursor() as cur:
                cur.execute("DROP USER IF EXISTS %s@'localhost'", (BUILD_USER,))
            conn.close()
            if log.exists():  # the commands' output, for the build log
                say(log.read_text().rstrip())
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"packages": installed_versions(schema_packages(profile)),
                                 "databases": databases}, indent=2) + "\n")
    say(f"[migrate] {len(databases)} databases migrated in {time.monotonic() - started:.1f} s; stamp {stamp}")

