"""The team's PostgreSQL: a cluster in the state folder (initdb, pg_ctl), its client rules
(pg_hba.conf), SSL, the MLflow database, the role that owns it (the MLflow server's login, no
superuser) and the roles that may only take the promotion lock: one per user who may move the
champion (the admin and each edit user), so no user can end another's lock session. They are
admitted as members of ``digits_lockers``, a group with no login and no privilege of its own;
``digits_lock``, the lock role every user shared before, stays for the settings that name it.

PostgreSQL refuses to run as root: under root its programs run as the ``postgres`` user, on a
data folder that user owns; anyone else runs them as themselves. Its superuser connects from
loopback only; the lock role from loopback and from ``server.allowed_networks``, over SSL
when TLS is on.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from digit_recognizer.config import TeamServerConfig
from digit_recognizer.config.environment import POSTGRES_BIN_VARIABLE, environment
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_private_text
from digit_recognizer.locks import redact
from digit_recognizer.team.programs import run_program
from digit_recognizer.team.state import StatePaths, ip_literal, is_wildcard
from digit_recognizer.team.tls import ServerCertificate

POSTGRES_SEARCH = "/usr/lib/postgresql/*/bin"  # Debian's layout, newest first
POSTGRES_OWNER = "postgres"  # who runs the cluster when we are root
SUPERUSER, DATABASE, LOCK_ROLE = "digits", "mlflow", "digits_lock"
LOCK_GROUP = "digits_lockers"  # the users' own lock roles, as pg_hba.conf admits them
# The prediction log's database (team/prediction_log.py): its owner and the role that writes
LOG_DATABASE, LOG_OWNER, LOG_WRITER = "predictions", "digits_log_owner", "digits_log"
STORE_ROLE = "digits_store"  # owns MLflow's database and nothing else: the server's login
LOOPBACK_NETWORKS = ("127.0.0.1/32", "::1/128")


def postgres_bin() -> Path:
    configured = environment().postgres_bin
    candidates = [Path(configured)] if configured else []
    on_path = shutil.which("initdb")
    candidates += [Path(on_path).parent] if on_path else []
    candidates += sorted(Path("/").glob(POSTGRES_SEARCH.lstrip("/")), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise UserError(
        "PostgreSQL's initdb and pg_ctl were not found (on PATH, in /usr/lib/postgresql/*/bin "
        f"or {POSTGRES_BIN_VARIABLE}): install PostgreSQL (Debian: apt-get install postgresql) "
        "or set server.database_url to an existing database"
    )


def _as_cluster_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_OWNER, "--", *argv] if os.geteuid() == 0 else argv


def _give_to_cluster_owner(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, POSTGRES_OWNER, POSTGRES_OWNER)


def _pg_ctl(paths: StatePaths, *arguments: str) -> list[str]:
    return _as_cluster_owner([str(postgres_bin() / "pg_ctl"), *arguments, "-D", str(paths.cluster)])


def local_url(config: TeamServerConfig, user: str, password: str, database: str = DATABASE) -> str:
    """A URL of one of our cluster's databases (MLflow's by default) from this machine."""
    host = "127.0.0.1" if is_wildcard(config.database_host) else config.database_host
    return (
        f"postgresql://{user}:{quote(password, safe='')}@{host}:{config.database_port}/{database}"
    )


def user_url(
    config: TeamServerConfig,
    address: str,
    role: str,
    password: str,
    authority: str | None,
    database: str = DATABASE,
    scheme: str = "postgresql",
) -> str:
    """A role's URL as users write it (the lock's, the prediction log's): the cluster on the
    address they reach us by, the server's certificate checked against ``authority`` (a path,
    or a shell expansion; None: the system's trust store, for a certificate of their own)."""
    host = address if is_wildcard(config.database_host) else config.database_host
    url = f"{scheme}://{role}:{quote(password, safe='')}@{host}:{config.database_port}/{database}"
    if not config.tls:
        return url
    return f"{url}?sslmode=verify-full&sslrootcert={authority or 'system'}"


def _client_rules(config: TeamServerConfig, address: str) -> str:
    """pg_hba.conf: the superuser from loopback; the lock roles (``+``: the group's members)
    and the prediction log's roles from loopback, from this machine's own address and from the
    team's networks (SSL only when TLS is on)."""
    remote = "hostssl" if config.tls else "host"
    users = [
        (DATABASE, f"{LOCK_ROLE},+{LOCK_GROUP}"),
        (LOG_DATABASE, f"{LOG_OWNER},{LOG_WRITER}"),
    ]
    lines = ["# written by digits server start; edit server.allowed_networks instead"]
    for network in LOOPBACK_NETWORKS:
        lines.append(f"host all {SUPERUSER} {network} scram-sha-256")
        lines.append(f"host {DATABASE} {STORE_ROLE} {network} scram-sha-256")
        lines += [f"host {database} {roles} {network} scram-sha-256" for database, roles in users]
    own = ip_literal(address)
    networks = [*config.allowed_networks] + ([f"{own}/{own.max_prefixlen}"] if own else [])
    for network in dict.fromkeys(networks):
        lines += [
            f"{remote} {database} {roles} {network} scram-sha-256" for database, roles in users
        ]
    return "\n".join(lines) + "\n"


def _listen_addresses(config: TeamServerConfig) -> str:
    if is_wildcard(config.database_host):
        return "*"
    return ",".join(dict.fromkeys(["127.0.0.1", config.database_host]))


def _initdb(paths: StatePaths, password: str) -> None:
    cluster_home = paths.cluster.parent
    cluster_home.mkdir(parents=True, exist_ok=True)
    cluster_home.chmod(0o700)
    _give_to_cluster_owner(cluster_home)
    password_file = cluster_home / "superuser-password"
    write_private_text(password_file, password + "\n")
    _give_to_cluster_owner(password_file)
    try:
        run_program(
            _as_cluster_owner(
                [
                    str(postgres_bin() / "initdb"),
                    *("--pgdata", str(paths.cluster), "--username", SUPERUSER),
                    *("--pwfile", str(password_file), "--encoding", "UTF8"),
                    *("--auth-host", "scram-sha-256", "--auth-local", "scram-sha-256"),
                ]
            ),
            f"initdb {paths.cluster}",
        )
    finally:
        password_file.unlink(missing_ok=True)


def _install(paths: StatePaths, name: str, content: str) -> Path:
    """A file the cluster's owner alone reads, in the cluster's home."""
    target = paths.cluster.parent / name
    write_private_text(target, content)
    _give_to_cluster_owner(target)
    return target


def start_cluster(
    config: TeamServerConfig,
    paths: StatePaths,
    superuser_password: str,
    address: str,
    certificate: ServerCertificate | None,
) -> None:
    """initdb on first start, the client rules written, then pg_ctl start (a running cluster
    reloads its rules instead)."""
    if not (paths.cluster / "PG_VERSION").exists():
        _initdb(paths, superuser_password)
    rules = _install(paths, "pg_hba.conf", _client_rules(config, address))
    options = [
        f"-c listen_addresses={shlex.quote(_listen_addresses(config))}",
        f"-p {config.database_port}",
        "-c unix_socket_directories=''",
        f"-c hba_file={shlex.quote(str(rules))}",
    ]
    if certificate is not None:
        chain = _install(paths, "server.pem", certificate.certificate.read_text())
        key = _install(paths, "server.key", certificate.key.read_text())
        options += [
            "-c ssl=on",
            f"-c ssl_cert_file={shlex.quote(str(chain))}",
            f"-c ssl_key_file={shlex.quote(str(key))}",
        ]
    if cluster_running(paths):
        run_program(_pg_ctl(paths, "reload"), "pg_ctl reload")
        return
    run_program(  # pg_ctl hands -o to a shell: every value above is quoted
        _pg_ctl(
            paths, "start", "--wait", "--log", str(paths.postgres_log), "-o", " ".join(options)
        ),
        f"PostgreSQL on {config.database_host}:{config.database_port} (log: {paths.postgres_log})",
    )


def cluster_running(paths: StatePaths) -> bool:
    if not (paths.cluster / "PG_VERSION").exists():
        return False
    status = subprocess.run(_pg_ctl(paths, "status"), capture_output=True, check=False)
    return status.returncode == 0  # 3: not running


def stop_cluster(paths: StatePaths) -> bool:
    if not cluster_running(paths):
        return False
    run_program(_pg_ctl(paths, "stop", "--wait", "--mode", "fast"), "pg_ctl stop")
    return True


def create_roles_and_database(
    config: TeamServerConfig, superuser_password: str, store_password: str, lock_password: str
) -> None:
    """MLflow's database owned by the store role (which may do nothing else: an injection
    through MLflow reaches no superuser's ``COPY ... PROGRAM``), and the lock role, which may
    only connect. A database from before is handed over to the store role, tables and all."""
    import psycopg
    from psycopg import sql

    url = local_url(config, SUPERUSER, superuser_password, "postgres")
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as connection:
        for role, password in ((STORE_ROLE, store_password), (LOCK_ROLE, lock_password)):
            login_role(connection, role, password, replace_password=False)
        found = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOCK_GROUP,))
        if found.fetchone() is None:
            connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(LOCK_GROUP)))
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if found.fetchone() is None:
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(STORE_ROLE)
                )
            )
        else:
            connection.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(STORE_ROLE)
                )
            )
    with psycopg.connect(
        url.rsplit("/", 1)[0] + f"/{DATABASE}", connect_timeout=10, autocommit=True
    ) as connection:
        # nobody else creates objects in it (PostgreSQL 15's default, said again for older
        # ones), nor temporary tables: the lock roles may connect and take the lock, no more
        connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        connection.execute(
            sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(DATABASE))
        )
        _hand_over_tables(connection)


def login_role(connection: Any, role: str, password: str, *, replace_password: bool) -> None:
    """A role that may log in and do nothing else of its own (no superuser, no databases, no
    roles): created when missing, its password set again when ``replace_password``."""
    from psycopg import sql

    found = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if found and not replace_password:
        return
    verb = "ALTER" if found else "CREATE"  # DDL takes no bound parameters: quoted literals
    connection.execute(
        sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )


def _hand_over_tables(connection: Any) -> None:
    """Tables and views the superuser made in an earlier version of this server, to the store
    role (a table's own sequences follow it)."""
    from psycopg import sql

    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}
    owned = connection.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE n.nspname = 'public' AND c.relkind = ANY(%s) "
        "AND pg_get_userbyid(c.relowner) <> %s",
        (list(kinds), STORE_ROLE),
    ).fetchall()
    for name, kind in owned:
        connection.execute(
            sql.SQL(f"ALTER {kinds[kind]} {{}} OWNER TO {{}}").format(
                sql.Identifier(name), sql.Identifier(STORE_ROLE)
            )
        )


def has_mlflow_tables(database_url: str) -> bool:
    import psycopg

    try:
        connection = psycopg.connect(database_url, connect_timeout=10)
    except psycopg.Error as error:
        raise UserError(f"{redact(database_url)}: cannot connect: {error}".strip()) from None
    with connection:
        row = connection.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        return bool(row and row[0])


def without_password(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that gives libpq the password."""
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url, {}
    bare = database_url.replace(f":{parts.password}@", "@", 1)
    return bare, {"PGPASSWORD": unquote(parts.password)}
