"""``digits server``: the team's MLflow server on PostgreSQL, with authentication.

``start`` brings up, on existing engines and without Docker, a PostgreSQL cluster in
``server.state_dir`` (or uses an existing database given by URL) as MLflow's backend store,
``mlflow server`` with proxied artifacts (``--serve-artifacts``) and MLflow's ``basic-auth`` app.
An admin password, the database passwords and the Flask secret are generated on first start
and kept owner-readable only in the state folder, with shell files that set the variables a
client needs (``admin.env``, one per user added). ``stop`` and ``status`` do what they say.

PostgreSQL refuses to run as root: under root its programs run as the ``postgres`` user, on a
data folder that user owns; anyone else runs them as themselves. No password appears in a
process's arguments (``ps`` shows them to every local user): the store URL reaches ``mlflow
server`` through its environment, and ``mlflow db upgrade`` gets a URL without the password and
the password as ``PGPASSWORD``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from digit_recognizer.config import MlflowConfig, TeamServerConfig
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_private_text
from digit_recognizer.locks import LOCK_URL_VARIABLE, redact

DATABASE_URL_VARIABLE = "DIGITS_SERVER_DATABASE_URL"
POSTGRES_BIN_VARIABLE = "DIGITS_POSTGRES_BIN"  # a folder holding initdb, pg_ctl, ...
POSTGRES_SEARCH = "/usr/lib/postgresql/*/bin"  # Debian's layout, newest first
POSTGRES_OWNER = "postgres"  # who runs the cluster when we are root
SUPERUSER, DATABASE, LOCK_ROLE = "digits", "mlflow", "digits_lock"
ADMIN_USER = "admin"
START_SECONDS = 180
AUTH_CACHE_SECONDS = 60
Permission = Literal["read", "edit"]
# A user's name becomes a file name in the state folder and a line of a shell file.
USER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ServerPaths:
    state: Path

    @property
    def cluster(self) -> Path:
        return self.state / "postgres" / "data"

    @property
    def secrets(self) -> Path:
        return self.state / "secrets.json"

    @property
    def auth_config(self) -> Path:
        return self.state / "basic_auth.ini"

    @property
    def pid(self) -> Path:
        return self.state / "mlflow.pid"

    @property
    def mlflow_log(self) -> Path:
        return self.state / "mlflow.log"

    @property
    def postgres_log(self) -> Path:
        return self.state / "postgres" / "postgres.log"

    @property
    def artifacts(self) -> Path:
        return self.state / "artifacts"

    def client_env(self, user: str) -> Path:
        return self.state / f"{user}.env"


@dataclass(frozen=True)
class ServerInfo:
    tracking_uri: str
    lock_url: str
    admin_env: Path
    already_running: bool


def server_paths(config: TeamServerConfig, root: Path) -> ServerPaths:
    return ServerPaths((root / config.state_dir).resolve())  # an absolute state_dir stays


def tracking_uri_of(config: TeamServerConfig) -> str:
    host = socket.gethostname() if config.host in ("0.0.0.0", "::") else config.host
    return f"http://{host}:{config.port}"


def _load_secrets(paths: ServerPaths) -> dict[str, str]:
    """The generated secrets, created on first start (never MLflow's or anyone's default)."""
    if paths.secrets.exists():
        try:
            return dict(json.loads(paths.secrets.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise UserError(
                f"{paths.secrets}: not the JSON `digits server start` wrote; restore it from a "
                "backup (the database and admin passwords are in it)"
            ) from None
    generated = {
        name: secrets.token_urlsafe(24)
        for name in ("admin_password", "database_password", "lock_password", "flask_secret_key")
    }
    write_private_text(paths.secrets, json.dumps(generated, indent=2) + "\n")
    return generated


def _postgres_bin() -> Path:
    configured = os.environ.get(POSTGRES_BIN_VARIABLE)
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
        f"or set server.database_url / {DATABASE_URL_VARIABLE} to an existing database"
    )


def _as_cluster_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_OWNER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
        raise UserError(f"{what} failed: {lines[-1]}")
    return result.stdout


def _give_to_cluster_owner(folder: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(folder, POSTGRES_OWNER, POSTGRES_OWNER)


def _cluster_url(config: TeamServerConfig, user: str, password: str) -> str:
    return (
        f"postgresql://{user}:{password}@{config.database_host}:{config.database_port}/{DATABASE}"
    )


def _start_cluster(config: TeamServerConfig, paths: ServerPaths, keys: dict[str, str]) -> None:
    """initdb on first start, then pg_ctl start; a running cluster is left as it is."""
    binaries = _postgres_bin()
    cluster_home = paths.cluster.parent
    if not (paths.cluster / "PG_VERSION").exists():
        cluster_home.mkdir(parents=True, exist_ok=True)
        cluster_home.chmod(0o700)
        _give_to_cluster_owner(cluster_home)
        password_file = cluster_home / "superuser-password"
        write_private_text(password_file, keys["database_password"] + "\n")
        _give_to_cluster_owner(password_file)
        try:
            _run(
                _as_cluster_owner(
                    [
                        str(binaries / "initdb"),
                        "--pgdata",
                        str(paths.cluster),
                        "--username",
                        SUPERUSER,
                        "--pwfile",
                        str(password_file),
                        "--auth-host",
                        "scram-sha-256",
                        "--auth-local",
                        "scram-sha-256",
                        "--encoding",
                        "UTF8",
                    ]
                ),
                f"initdb {paths.cluster}",
            )
        finally:
            password_file.unlink(missing_ok=True)
    status = subprocess.run(
        _as_cluster_owner([str(binaries / "pg_ctl"), "status", "--pgdata", str(paths.cluster)]),
        capture_output=True,
        check=False,
    )
    if status.returncode != 0:  # 3: not running
        options = (
            # pg_ctl hands -o to a shell: every value quoted
            f"-c listen_addresses={shlex.quote(config.database_host)} -p {config.database_port} "
            "-c unix_socket_directories=''"
        )
        _run(
            _as_cluster_owner(
                [
                    str(binaries / "pg_ctl"),
                    "start",
                    "--wait",
                    "--pgdata",
                    str(paths.cluster),
                    "--log",
                    str(paths.postgres_log),
                    "-o",
                    options,
                ]
            ),
            f"PostgreSQL on {config.database_host}:{config.database_port} (log: "
            f"{paths.postgres_log})",
        )
    _create_database_and_lock_role(config, keys)


def _create_database_and_lock_role(config: TeamServerConfig, keys: dict[str, str]) -> None:
    import psycopg
    from psycopg import sql

    admin_url = _cluster_url(config, SUPERUSER, keys["database_password"]).rsplit("/", 1)[0]
    connection = psycopg.connect(f"{admin_url}/postgres", connect_timeout=10)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOCK_ROLE,))
            if cursor.fetchone() is None:
                # Only for advisory locks: it may connect, and reads or writes no table.
                cursor.execute(  # DDL takes no bound parameters: a quoted literal
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(LOCK_ROLE), sql.Literal(keys["lock_password"])
                    )
                )
    finally:
        connection.close()


def _database_urls(config: TeamServerConfig, keys: dict[str, str]) -> tuple[str, str] | None:
    """(backend store URL, lock URL) of an existing database, or None for our own cluster."""
    existing = os.environ.get(DATABASE_URL_VARIABLE) or config.database_url
    return (existing, existing) if existing else None


def _has_mlflow_tables(database_url: str) -> bool:
    import psycopg

    try:
        connection = psycopg.connect(database_url, connect_timeout=10)
    except psycopg.Error as error:
        raise UserError(f"{redact(database_url)}: cannot connect: {error}".strip()) from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            row = cursor.fetchone()
            return bool(row and row[0])
    finally:
        connection.close()


def _write_auth_config(paths: ServerPaths, database_url: str, keys: dict[str, str]) -> None:
    # Users and permissions live beside the runs (MLflow keeps them in their own tables).
    write_private_text(
        paths.auth_config,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_url}\n"
        f"admin_username = {ADMIN_USER}\n"
        f"admin_password = {keys['admin_password']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Checking a password hashes it (PBKDF2): about 0.35 s per request on 2 cores, which
        # made a pipeline's thousands of logging calls crawl. A checked password is trusted for
        # a minute per server process; a changed or deleted user takes up to that long to lapse.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n",
    )


def _write_client_env(
    path: Path, tracking_uri: str, user: str, password: str, lock_url: str | None
) -> None:
    """A user's settings; the lock's credentials only for those who may promote."""
    settings = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
    }
    if lock_url is not None:
        settings[LOCK_URL_VARIABLE] = lock_url
    write_private_text(
        path, "".join(f"export {name}={shlex.quote(value)}\n" for name, value in settings.items())
    )


def _server_pid(paths: ServerPaths) -> int | None:
    """The MLflow server's process id while it runs: the pid file's, if that process is still
    an MLflow server (a pid left by a crash may have been reused by anything since)."""
    try:
        pid = int(paths.pid.read_text())
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"mlflow" in arguments and b"server" in arguments else None


def _without_password(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that gives libpq the password."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url, {}
    bare = database_url.replace(f":{parts.password}@", "@", 1)
    return bare, {"PGPASSWORD": unquote(parts.password)}


def healthy(tracking_uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{tracking_uri}/health", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "(empty log)"


def start(config: TeamServerConfig, root: Path) -> ServerInfo:
    """Bring the database and the MLflow server up (what runs already is left running)."""
    paths = server_paths(config, root)
    paths.state.mkdir(parents=True, exist_ok=True)
    paths.state.chmod(0o711)  # the cluster's owner must reach its folder, not read ours
    keys = _load_secrets(paths)
    tracking_uri = tracking_uri_of(config)
    existing = _database_urls(config, keys)
    if existing is None:
        _start_cluster(config, paths, keys)
        database_url = _cluster_url(config, SUPERUSER, keys["database_password"])
        lock_url = _cluster_url(config, LOCK_ROLE, keys["lock_password"])
    else:
        database_url, lock_url = existing
    admin_env = paths.client_env(ADMIN_USER)
    _write_client_env(admin_env, tracking_uri, ADMIN_USER, keys["admin_password"], lock_url)
    if _server_pid(paths) is not None and healthy(tracking_uri):
        return ServerInfo(tracking_uri, lock_url, admin_env, already_running=True)
    if _has_mlflow_tables(database_url):  # an older MLflow's schema is upgraded first
        bare_url, password_environment = _without_password(database_url)
        _run(
            [sys.executable, "-m", "mlflow", "db", "upgrade", bare_url],
            f"mlflow db upgrade {redact(database_url)}",
            env={**os.environ, **password_environment},
        )
    _write_auth_config(paths, database_url, keys)
    destination = config.artifacts_destination or paths.artifacts.as_uri()
    environment = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(paths.auth_config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": keys["flask_secret_key"],
        "MLFLOW_BACKEND_STORE_URI": database_url,  # not an argument: ps would show it
        # MLflow 3 also starts seven job consumers for GenAI features this project never
        # uses; on 2 cores their start-up and polling competed with training.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    with paths.mlflow_log.open("ab") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--app-name",
                "basic-auth",
                "--serve-artifacts",
                "--artifacts-destination",
                destination,
                "--host",
                config.host,
                "--port",
                str(config.port),
                "--workers",
                str(config.workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,  # outlives this command; stop signals its whole group
        )
    write_private_text(paths.pid, f"{server.pid}\n")
    deadline = time.monotonic() + START_SECONDS
    while not healthy(tracking_uri):
        if server.poll() is not None or time.monotonic() > deadline:
            _stop_server(paths)
            raise UserError(
                f"mlflow server on {tracking_uri} did not come up: {_last_line(paths.mlflow_log)} "
                f"(log: {paths.mlflow_log})"
            )
        time.sleep(1)
    return ServerInfo(tracking_uri, lock_url, admin_env, already_running=False)


def _stop_server(paths: ServerPaths) -> bool:
    pid = _server_pid(paths)
    if pid is None:
        paths.pid.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _server_pid(paths) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    if _server_pid(paths) is not None:
        os.killpg(pid, signal.SIGKILL)
    paths.pid.unlink(missing_ok=True)
    return True


def _cluster_running(paths: ServerPaths) -> bool:
    if not (paths.cluster / "PG_VERSION").exists():
        return False
    status = subprocess.run(
        _as_cluster_owner(
            [str(_postgres_bin() / "pg_ctl"), "status", "--pgdata", str(paths.cluster)]
        ),
        capture_output=True,
        check=False,
    )
    return status.returncode == 0


def stop(config: TeamServerConfig, root: Path) -> list[str]:
    """Stop the MLflow server and our own cluster; say what was stopped."""
    paths = server_paths(config, root)
    stopped = []
    if _stop_server(paths):
        stopped.append(f"mlflow server on {tracking_uri_of(config)}")
    if _cluster_running(paths):
        _run(
            _as_cluster_owner(
                [
                    str(_postgres_bin() / "pg_ctl"),
                    "stop",
                    "--wait",
                    "--mode",
                    "fast",
                    "--pgdata",
                    str(paths.cluster),
                ]
            ),
            "pg_ctl stop",
        )
        stopped.append(f"PostgreSQL on {config.database_host}:{config.database_port}")
    return stopped


def status(config: TeamServerConfig, root: Path) -> list[str]:
    paths = server_paths(config, root)
    tracking_uri = tracking_uri_of(config)
    pid = _server_pid(paths)
    server_line = (
        f"mlflow server: running (pid {pid}), {tracking_uri} "
        f"{'healthy' if healthy(tracking_uri) else 'not answering /health'}"
        if pid
        else f"mlflow server: stopped ({tracking_uri})"
    )
    if _database_urls(config, {}) is not None:
        database_line = "database: external (server.database_url)"
    else:
        database_line = (
            f"database: PostgreSQL {'running' if _cluster_running(paths) else 'stopped'} on "
            f"{config.database_host}:{config.database_port} ({paths.cluster})"
        )
    lines = [server_line, database_line]
    if paths.client_env(ADMIN_USER).exists():
        lines.append(f"client settings (admin): source {paths.client_env(ADMIN_USER)}")
    return lines


def add_user(
    config: TeamServerConfig,
    mlflow_config: MlflowConfig,
    root: Path,
    user: str,
    permission: Permission,
) -> Path:
    """Create ``user`` with a generated password; ``edit`` may log runs and move aliases of the
    project's experiment and registered model, ``read`` may only look. Returns the user's
    client settings file (owner-readable: hand it over privately)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    if not USER_NAME.fullmatch(user):
        raise UserError(
            f"add-user {user!r}: a user name is a letter, then up to 63 letters, digits, "
            "'_', '.' or '-'"
        )
    paths = server_paths(config, root)
    if not paths.secrets.exists():
        raise UserError(f"{paths.secrets}: not found; run digits server start first")
    keys = _load_secrets(paths)
    tracking_uri = tracking_uri_of(config)
    if not healthy(tracking_uri):
        raise UserError(f"mlflow server on {tracking_uri} is not running: digits server start")
    password = secrets.token_urlsafe(18)
    os.environ["MLFLOW_TRACKING_USERNAME"] = ADMIN_USER
    os.environ["MLFLOW_TRACKING_PASSWORD"] = keys["admin_password"]
    client = get_app_client("basic-auth", tracking_uri=tracking_uri)
    try:
        client.create_user(user, password)
        if permission == "edit":
            for resource_type, resource_id in _project_resources(tracking_uri, mlflow_config):
                client.grant_user_permission(user, resource_type, resource_id, "EDIT")
    except MlflowException as error:
        # MLflow appends the failed SQL (with the password's hash) after " Error: ": keep the
        # sentence before it.
        reason = error.message.strip().splitlines()[0].split(" Error: ")[0]
        raise UserError(f"add-user {user}: {reason}") from None
    existing = _database_urls(config, keys)
    lock_url = existing[1] if existing else _cluster_url(config, LOCK_ROLE, keys["lock_password"])
    env_path = paths.client_env(user)
    # a read user cannot move an alias, so needs no lock (nor its database credentials)
    _write_client_env(
        env_path, tracking_uri, user, password, lock_url if permission == "edit" else None
    )
    return env_path


def _project_resources(tracking_uri: str, config: MlflowConfig) -> list[tuple[str, str]]:
    """The project's experiment and registered model, created (as admin) if new."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment_name)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(config.experiment_name)
    )
    try:
        client.get_registered_model(config.registered_model_name)
    except MlflowException:
        client.create_registered_model(config.registered_model_name)
    return [("experiment", experiment_id), ("registered_model", config.registered_model_name)]
