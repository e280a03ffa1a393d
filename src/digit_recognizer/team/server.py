"""``digits server start|stop|status|add-user``: the parts of team mode put together.

``start`` brings up, on existing engines and without Docker, a PostgreSQL cluster in
``server.state_dir`` (or uses an existing database given by URL) as MLflow's backend store and
``mlflow server`` with proxied artifacts and MLflow's ``basic-auth`` app, over TLS unless told
otherwise. The admin password, the database passwords and the Flask secret are generated on
first start and kept owner-readable only in the state folder, with the settings files users
source (``admin.env``, one per user added).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from digit_recognizer.config import MlflowConfig, TeamServerConfig
from digit_recognizer.config.environment import (
    LOCK_DATABASE_URL_VARIABLE,
    LOCK_URL_VARIABLE,
    PREDICTION_LOG_URL_VARIABLE,
    environment,
)
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_private_text
from digit_recognizer.locks import file_lock, redact
from digit_recognizer.team import postgres, roles
from digit_recognizer.team.access import UnreadableUserList, read_users
from digit_recognizer.team.account import hand_over, server_account
from digit_recognizer.team.mlflow_server import server_pid, start_server, stop_server
from digit_recognizer.team.programs import run_program
from digit_recognizer.team.state import (
    ADMIN_USER,
    Permission,
    StatePaths,
    check_exposure,
    check_user_name,
    load_secrets,
    public_address,
    state_paths,
    tracking_uri_of,
)
from digit_recognizer.team.tls import ServerCertificate, authority_of, server_certificate
from digit_recognizer.team.users import AUTHORITY_EXPANSION, add_user, write_client_settings
from digit_recognizer.tracking import healthy


@dataclass(frozen=True)
class ServerInfo:
    tracking_uri: str
    admin_settings: Path
    already_running: bool


@dataclass(frozen=True)
class Databases:
    """The backend store's URL (the server's alone) and, with an existing database, the lock's
    URL as users write it (our own cluster gives each user a lock role: ``database_settings``)."""

    store_url: str
    lock_url: str | None
    own_cluster: bool


def _existing_database(config: TeamServerConfig) -> tuple[str, str] | None:
    """(store URL, lock URL) of an existing database, or None for our own cluster."""
    store = environment().server_database_url or config.database_url
    if not store:
        return None
    lock = environment().server_lock_database_url or config.lock_database_url
    store_parts, lock_parts = urlsplit(store), urlsplit(lock)
    if not lock or (lock_parts.username, lock_parts.hostname, lock_parts.port) == (
        store_parts.username,
        store_parts.hostname,
        store_parts.port,
    ):
        raise UserError(
            f"params.yaml: server.database_url is set, so promotions need their own lock "
            f"database or role in server.lock_database_url (or {LOCK_DATABASE_URL_VARIABLE}): "
            "users must never get the store's credentials, which bypass MLflow's auth"
        )
    return store, lock


def _databases(
    config: TeamServerConfig, keys: dict[str, str], address: str, authority: str | None
) -> Databases:
    existing = _existing_database(config)
    if existing is not None:
        return Databases(*existing, own_cluster=False)
    return Databases(
        postgres.local_url(config, postgres.STORE_ROLE, keys["store_password"]),
        None,
        own_cluster=True,
    )


def database_settings(
    config: TeamServerConfig,
    keys: dict[str, str],
    databases: Databases,
    user: str,
    permission: Permission | None,
    authority: str | None,
) -> dict[str, str]:
    """What ``user``'s settings name of the databases: for the admin (``permission`` None) and
    edit users, the promotion lock (in our cluster a lock role of their own, made or given a new
    password) and the prediction log (the admin as its owner, edit users as its writer); for
    read users nothing."""
    if permission == "read":
        return {}
    if databases.lock_url is not None:  # an existing database: its lock; the log stays local
        return {LOCK_URL_VARIABLE: databases.lock_url}
    address = public_address(config)
    lock_password = roles.create_lock_role(config, keys["database_password"], user)
    role, log_password = (
        (postgres.LOG_OWNER, keys["log_owner_password"])
        if permission is None
        else (postgres.LOG_WRITER, keys["log_password"])
    )
    return {
        LOCK_URL_VARIABLE: postgres.user_url(
            config, address, roles.lock_role_of(user), lock_password, authority
        ),
        # the pure-Python driver: a server that loaded TensorFlow cannot use libpq's SSL
        PREDICTION_LOG_URL_VARIABLE: postgres.user_url(
            config,
            address,
            role,
            log_password,
            authority,
            postgres.LOG_DATABASE,
            "postgresql+pg8000",
        ),
    }


def _certificate(
    config: TeamServerConfig, paths: StatePaths, root: Path
) -> ServerCertificate | None:
    return server_certificate(config, paths, root, public_address(config)) if config.tls else None


def start(config: TeamServerConfig, root: Path) -> ServerInfo:
    """Bring the database and the MLflow server up (what runs already is left running)."""
    check_exposure(config)
    address, tracking_uri = public_address(config), tracking_uri_of(config)
    paths = state_paths(config, root)
    paths.state.mkdir(parents=True, exist_ok=True)
    paths.state.chmod(0o711)  # the cluster's owner must reach its folder, not read ours
    keys = load_secrets(paths)
    certificate = _certificate(config, paths, root)
    authority = certificate.authority if certificate else None
    expansion = AUTHORITY_EXPANSION if authority else None  # where users keep the authority
    databases = _databases(config, keys, address, expansion)
    if databases.own_cluster:
        postgres.start_cluster(config, paths, keys["database_password"], address, certificate)
        postgres.create_roles_and_database(
            config, keys["database_password"], keys["store_password"], keys["lock_password"]
        )
        roles.create_log_database(
            config, keys["database_password"], keys["log_owner_password"], keys["log_password"]
        )
    if not paths.read_users.exists():  # the server refuses every write without it
        write_private_text(paths.read_users, "[]\n")
    admin_settings = paths.client_settings(ADMIN_USER)
    write_client_settings(
        admin_settings,
        tracking_uri,
        ADMIN_USER,
        keys["admin_password"],
        database_settings(config, keys, databases, ADMIN_USER, None, expansion),
        authority,
    )
    if server_pid(paths) is not None and healthy(tracking_uri, authority):
        return ServerInfo(tracking_uri, admin_settings, already_running=True)
    if postgres.has_mlflow_tables(databases.store_url):  # an older MLflow's schema upgraded
        bare_url, password_environment = postgres.without_password(databases.store_url)
        run_program(
            [sys.executable, "-m", "mlflow", "db", "upgrade", bare_url],
            f"mlflow db upgrade {redact(databases.store_url)}",
            env={**os.environ, **password_environment},
        )
    start_server(config, paths, tracking_uri, databases.store_url, keys, address, certificate)
    return ServerInfo(tracking_uri, admin_settings, already_running=False)


def stop(config: TeamServerConfig, root: Path) -> list[str]:
    """Stop the MLflow server and our own cluster; say what was stopped."""
    paths = state_paths(config, root)
    stopped = []
    if stop_server(paths):
        stopped.append("mlflow server")
    if postgres.stop_cluster(paths):
        stopped.append(f"PostgreSQL on {config.database_host}:{config.database_port}")
    return stopped


def status(config: TeamServerConfig, root: Path) -> list[str]:
    paths = state_paths(config, root)
    tracking_uri = tracking_uri_of(config)
    pid = server_pid(paths)
    authority = authority_of(config, paths)
    answering = "healthy" if healthy(tracking_uri, authority) else "not answering /health"
    lines = [
        f"mlflow server: running (pid {pid}), {tracking_uri} {answering}"
        if pid
        else f"mlflow server: stopped ({tracking_uri})"
    ]
    if environment().server_database_url or config.database_url:
        lines.append("database: external (server.database_url)")
    else:
        running = "running" if postgres.cluster_running(paths) else "stopped"
        lines.append(
            f"database: PostgreSQL {running} on {config.database_host}:{config.database_port} "
            f"({paths.cluster})"
        )
    if paths.client_settings(ADMIN_USER).exists():
        lines.append(f"client settings (admin): source {paths.client_settings(ADMIN_USER)}")
    return lines


def add_team_user(
    config: TeamServerConfig,
    mlflow_config: MlflowConfig,
    root: Path,
    user: str,
    permission: Permission,
) -> Path:
    """Create ``user``; return their settings file (owner-readable: hand it over privately)."""
    check_user_name(user)  # before anything is written
    paths = state_paths(config, root)
    if not paths.secrets.exists():
        raise UserError(f"{paths.secrets}: not found; run digits server start first")
    keys = load_secrets(paths)
    tracking_uri = tracking_uri_of(config)
    authority = authority_of(config, paths)  # what start issued; add-user issues nothing
    if not healthy(tracking_uri, authority):
        raise UserError(f"mlflow server on {tracking_uri} is not running: digits server start")
    password = add_user(
        tracking_uri, keys["admin_password"], authority, mlflow_config, user, permission
    )
    expansion = AUTHORITY_EXPANSION if authority else None  # where users keep the authority
    databases = _databases(config, keys, public_address(config), expansion)
    lock = paths.read_users.with_name(paths.read_users.name + ".lock")
    if not lock.exists():  # owner-only, like everything in the state folder
        write_private_text(lock, "")
    with file_lock(lock, timeout=60):
        # read, change, write under one lock: two add-user runs at once both keep their user
        try:
            readers = read_users(paths.read_users) - {user}
        except UnreadableUserList as error:
            raise UserError(f"{error}; digits server start writes an empty list") from None
        readers |= {user} if permission == "read" else set()
        write_private_text(paths.read_users, json.dumps(sorted(readers)) + "\n")
        hand_over(server_account(config.run_as), paths.read_users)  # what the server reads
    settings = paths.client_settings(user)
    # a read user cannot move an alias, so needs no lock (nor any database's credentials)
    named = database_settings(config, keys, databases, user, permission, expansion)
    write_client_settings(settings, tracking_uri, user, password, named, authority)
    return settings
