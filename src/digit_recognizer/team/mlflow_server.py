"""``mlflow server`` for the team: the basic-auth app with proxied artifacts, over HTTPS with
the server's certificate, answering only to the names its users reach it by.

No secret appears in its arguments (``ps`` shows them to every local user): the store URL
reaches it through ``MLFLOW_BACKEND_STORE_URI``, the auth app's through its config file.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from digit_recognizer.config import TeamServerConfig
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_private_text
from digit_recognizer.team.access import READ_USERS_VARIABLE
from digit_recognizer.team.account import (
    ServerAccount,
    check_can_run,
    hand_over,
    server_account,
)
from digit_recognizer.team.programs import last_line
from digit_recognizer.team.state import ADMIN_USER, StatePaths, url_host
from digit_recognizer.team.tls import ServerCertificate
from digit_recognizer.tracking import SERVER_ENVIRONMENT, healthy

AUTHORIZATION_FUNCTION = "digit_recognizer.team.access:authenticate_team_request"
START_SECONDS = 180
AUTH_CACHE_SECONDS = 60
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def server_pid(paths: StatePaths) -> int | None:
    """The MLflow server's process id while it runs: the pid file's, if that process is still
    an MLflow server (a pid left by a crash may have been reused by anything since)."""
    try:
        pid = int(paths.pid.read_text())
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"mlflow" in arguments and b"server" in arguments else None


def _write_auth_config(paths: StatePaths, database_url: str, admin_password: str) -> None:
    # Users and permissions live beside the runs (MLflow keeps them in their own tables).
    write_private_text(
        paths.auth_config,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_url}\n"
        f"admin_username = {ADMIN_USER}\n"
        f"admin_password = {admin_password}\n"
        f"authorization_function = {AUTHORIZATION_FUNCTION}\n"
        # Checking a password hashes it (PBKDF2): about 0.35 s per request on 2 cores, which
        # made a pipeline's thousands of logging calls crawl. A checked password is trusted for
        # a minute per server process; a changed or deleted user takes up to that long to lapse.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n",
    )


def _network_options(
    config: TeamServerConfig, address: str, certificate: ServerCertificate | None
) -> list[str]:
    """Host header check and CORS for the names users reach us by (MLflow 3 refuses other
    Host headers, against DNS rebinding); the certificate for uvicorn when TLS is on."""
    names = dict.fromkeys([url_host(address), *LOCAL_NAMES])
    hosts = [entry for name in names for entry in (name, f"{name}:{config.port}")]
    scheme = "https" if certificate else "http"
    options = [
        *("--allowed-hosts", ",".join(hosts)),
        *("--cors-allowed-origins", ",".join(f"{scheme}://{n}:{config.port}" for n in names)),
    ]
    if certificate is not None:
        # MLflow splits these with shlex: quoted, a path with a space stays one argument
        tls = shlex.join(
            ["--ssl-certfile", str(certificate.certificate), "--ssl-keyfile", str(certificate.key)]
        )
        options += ["--uvicorn-opts", tls]
    return options


def _server_copy(
    paths: StatePaths, certificate: ServerCertificate | None, account: ServerAccount | None
) -> ServerCertificate | None:
    """The certificate as the server reads it: a copy of certificate and key in a folder of
    the server account's own, so the folder beside them (with the authority's key) stays root's."""
    if certificate is None or account is None:
        return certificate
    paths.server_tls.mkdir(mode=0o700, exist_ok=True)
    copies = []
    for source in (certificate.certificate, certificate.key):
        target = paths.server_tls / source.name
        write_private_text(target, source.read_text())
        copies.append(target)
    hand_over(account, paths.server_tls)
    return dataclasses.replace(certificate, certificate=copies[0], key=copies[1])


def start_server(
    config: TeamServerConfig,
    paths: StatePaths,
    tracking_uri: str,
    database_url: str,
    keys: dict[str, str],
    address: str,
    certificate: ServerCertificate | None,
) -> None:
    _write_auth_config(paths, database_url, keys["admin_password"])
    destination = config.artifacts_destination or paths.artifacts.as_uri()
    environment = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(paths.auth_config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": keys["flask_secret_key"],
        "MLFLOW_BACKEND_STORE_URI": database_url,  # not an argument: ps would show it
        READ_USERS_VARIABLE: str(paths.read_users),
        **SERVER_ENVIRONMENT,
    }
    if not config.artifacts_destination:
        paths.artifacts.mkdir(mode=0o700, exist_ok=True)
        paths.artifacts.chmod(0o700)
    account = server_account(config.run_as)
    certificate = _server_copy(paths, certificate, account)
    hand_over(account, paths.auth_config, paths.read_users, paths.artifacts)
    if account is not None:
        read = [paths.auth_config, paths.read_users]
        check_can_run(
            account,
            environment,
            read + ([certificate.certificate, certificate.key] if certificate else []),
        )
    # owner-only, like everything the server writes (umask 077): any local account could
    # otherwise read every model and the log without going through basic auth
    descriptor = os.open(paths.mlflow_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "ab") as log:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"),
                *("--serve-artifacts", "--artifacts-destination", destination),
                *("--host", config.host, "--port", str(config.port)),
                *("--workers", str(config.workers)),
                *_network_options(config, address, certificate),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            umask=0o077,
            start_new_session=True,  # outlives this command; stop signals its whole group
            cwd=paths.state,
            user=account.uid if account else None,
            group=account.gid if account else None,
            extra_groups=[] if account else None,
        )
    write_private_text(paths.pid, f"{server.pid}\n")
    authority = certificate.authority if certificate else None
    deadline = time.monotonic() + START_SECONDS
    while not healthy(tracking_uri, authority):
        if server.poll() is not None or time.monotonic() > deadline:
            stop_server(paths)
            raise UserError(
                f"mlflow server on {tracking_uri} did not come up: {last_line(paths.mlflow_log)} "
                f"(log: {paths.mlflow_log})"
            )
        time.sleep(1)


def stop_server(paths: StatePaths) -> bool:
    pid = server_pid(paths)
    if pid is None:
        paths.pid.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while server_pid(paths) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    if server_pid(paths) is not None:
        os.killpg(pid, signal.SIGKILL)
    paths.pid.unlink(missing_ok=True)
    return True
