"""Infrastructure steps: MariaDB, RabbitMQ, memcached."""

from __future__ import annotations

import re

from ..errors import ApplianceError
from .context import AgentContext
from .system import enable_and_start, log, run, wait_for

MARIADB_SOCKET = "/run/mysqld/mysqld.sock"
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _identifier(name: str) -> str:
    # Database and user names cannot be query parameters; they come from the profile and
    # are checked here so that no quoting question arises.
    if not _IDENTIFIER.fullmatch(name):
        raise ApplianceError(f"refusing unusual database identifier {name!r}")
    return name


def _mariadb_unit(ctx: AgentContext) -> str:
    return ctx.profile.service("mariadb").units[0]


def mariadb_connect():
    import pymysql

    # root authenticates by unix socket only; no root password exists.
    return pymysql.connect(unix_socket=MARIADB_SOCKET, user="root", autocommit=True)


def secure_mariadb(ctx: AgentContext) -> None:
    enable_and_start([_mariadb_unit(ctx)])
    wait_for("MariaDB", lambda: mariadb_connect().close() is None, timeout=120)
    conn = mariadb_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT User, Host FROM mysql.user WHERE User = '' OR (User = 'root' AND Host <> 'localhost')")
            for user, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (user, host))
            cur.execute("DROP DATABASE IF EXISTS test")
            cur.execute("DELETE FROM mysql.db WHERE Db = 'test' OR Db LIKE 'test\\\\_%%'")
            cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket")
            cur.execute("FLUSH PRIVILEGES")
    finally:
        conn.close()


def service_databases(ctx: AgentContext) -> None:
    secrets = ctx.secrets
    conn = mariadb_connect()
    try:
        with conn.cursor() as cur:
            for svc in ctx.profile.services:
                if not svc.databases:
                    continue
                user = _identifier(svc.db_user)
                password = secrets[f"{svc.db_user}_db_password"]
                for host in ("localhost", "%"):
                    cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
                    # Converges a user left with another password by an earlier, interrupted run.
                    cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
                for database in svc.databases:
                    name = _identifier(database)
                    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
                    for host in ("localhost", "%"):
                        cur.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@%s", (user, host))
            cur.execute("FLUSH PRIVILEGES")
    finally:
        conn.close()


def databases_exist(ctx: AgentContext) -> bool:
    wanted = {db for svc in ctx.profile.services for db in svc.databases}
    try:
        conn = mariadb_connect()
    except Exception:
        return False
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES")
            return wanted <= {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def rabbitmq_users() -> set[str]:
    out = run(["rabbitmqctl", "-q", "list_users"]).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip() and not line.startswith("user")}


EPMD_PORT = 4369


def epmd_address_wanted(ctx: AgentContext) -> str | None:
    """The one address epmd must listen on, or None when the profile declares it on any."""
    for port in ctx.profile.service("rabbitmq").ports:
        if port.port == EPMD_PORT and port.bind != "any":
            return "127.0.0.1" if port.bind == "loopback" else ctx.facts.management_ip
    return None


def listening_addresses(port: int) -> set[str]:
    """Addresses with a TCP listener on ``port`` in this network namespace (from ss)."""
    out = run(["ss", "-Hltn", f"sport = :{port}"], timeout=30).stdout
    return {line.split()[3].rpartition(":")[0].strip("[]") for line in out.splitlines() if line.strip()}


def epmd_socket(ctx: AgentContext, unit: str) -> None:
    """Re-bind epmd.socket to its declared address (the configs step wrote the drop-in).

    Debian enables epmd.socket and epmd.service, so at boot epmd listens on every address
    before the agent runs. A daemon-reload changes what `systemctl show -p Listen` says but
    not the bound socket: that takes stopping epmd (systemd refuses to restart a socket
    whose service runs) and RabbitMQ (registered with the old epmd), then the socket. So
    this looks at what really listens."""
    wanted = epmd_address_wanted(ctx)
    if wanted is None:
        return
    found = listening_addresses(EPMD_PORT)
    if found <= {wanted}:
        return
    log(f"epmd listens on {', '.join(sorted(found))}; re-binding it to {wanted}")
    # One at a time: RabbitMQ's ExecStop runs rabbitmqctl, which starts an epmd of its own
    # when it finds none (seen when stopped together with epmd), holding the port.
    run(["systemctl", "stop", unit], timeout=300)
    run(["systemctl", "stop", "epmd.socket", "epmd.service"], timeout=60)
    if listening_addresses(EPMD_PORT):
        # An epmd started by an Erlang CLI outside systemd: ask it to exit (no node is
        # registered with it any more, so it accepts).
        run(["epmd", "-kill"], check=False, timeout=30)
        wait_for("epmd to exit", lambda: not listening_addresses(EPMD_PORT), timeout=30, interval=0.5)
    run(["systemctl", "start", "epmd.socket"], timeout=60)
    found = listening_addresses(EPMD_PORT)
    if found != {wanted}:
        raise ApplianceError(f"epmd.socket listens on {', '.join(sorted(found)) or 'nothing'} after a restart, "
                             f"expected {wanted} (see /etc/systemd/system/epmd.socket.d/)")


AMQP_PORT = 5672
OPENSTACK_USER = "openstack"


def amqp_address(ctx: AgentContext) -> str:
    """Where RabbitMQ's AMQP listener is reached from this host (its declared bind)."""
    binds = [p.bind for p in ctx.profile.service("rabbitmq").ports if p.port == AMQP_PORT]
    return "127.0.0.1" if binds == ["loopback"] else ctx.facts.management_ip


def amqp_connection(ctx: AgentContext):
    """An unopened AMQP 0-9-1 connection as the OpenStack user (``with`` opens and closes
    it). python3-amqp is the client oslo.messaging's kombu driver already uses."""
    import amqp

    return amqp.Connection(host=f"{amqp_address(ctx)}:{AMQP_PORT}", userid=OPENSTACK_USER,
                           password=ctx.secrets["rabbitmq_password"], connect_timeout=10)


def openstack_user_logs_in(ctx: AgentContext) -> bool:
    """True when RabbitMQ accepts the OpenStack user, False when it refuses it
    (ACCESS_REFUSED); raises while nothing listens yet."""
    import amqp

    try:
        with amqp_connection(ctx):
            return True
    except amqp.exceptions.AccessRefused:
        return False


def rabbitmq(ctx: AgentContext) -> None:
    """RabbitMQ with the OpenStack user and no guest. The user comes from the definitions
    file RabbitMQ imports at start (rabbitmq.conf ``load_definitions``); on a first start
    that import also keeps RabbitMQ from creating "guest". rabbitmqctl (an Erlang VM per
    call: seconds of CPU, a minute under emulation) is used only when the user is refused,
    i.e. a database that predates the definitions file."""
    unit = ctx.profile.service("rabbitmq").units[0]
    epmd_socket(ctx, unit)
    enable_and_start([unit])
    answers: list[bool] = []
    wait_for("RabbitMQ's AMQP listener", lambda: answers.append(openstack_user_logs_in(ctx)) or True, timeout=180)
    if answers[-1]:
        return
    log("RabbitMQ refused the OpenStack user (its database predates the definitions file): setting it with rabbitmqctl")
    password = ctx.secrets["rabbitmq_password"]
    # rabbitmqctl reads the password from stdin when it is left off the command line.
    if OPENSTACK_USER in rabbitmq_users():
        run(["rabbitmqctl", "change_password", OPENSTACK_USER], stdin=password + "\n")
    else:
        run(["rabbitmqctl", "add_user", OPENSTACK_USER], stdin=password + "\n")
    run(["rabbitmqctl", "set_permissions", OPENSTACK_USER, ".*", ".*", ".*"])
    if "guest" in rabbitmq_users():
        run(["rabbitmqctl", "delete_user", "guest"])


def memcached(ctx: AgentContext) -> None:
    enable_and_start(list(ctx.profile.service("memcached").units))
