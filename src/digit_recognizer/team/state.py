"""Where the team server keeps its state, the secrets it generated, and the address by which
its users reach it."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from digit_recognizer.config import TeamServerConfig
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_private_text

ADMIN_USER = "admin"
Permission = Literal["read", "edit"]
# A user's name becomes a file name in the state folder and a line of a shell file.
USER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
WILDCARDS = frozenset({"0.0.0.0", "::", "*", ""})
SECRET_NAMES = (
    "admin_password",
    "database_password",  # the cluster's superuser: the admin's, never the server's
    "store_password",  # the role that owns MLflow's database, and nothing else
    "lock_password",  # the lock role every user shared before each had their own
    "log_owner_password",  # the prediction log's owner: the admin's
    "log_password",  # the prediction log's writer: every edit user's
    "flask_secret_key",
)


@dataclass(frozen=True)
class StatePaths:
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

    @property
    def read_users(self) -> Path:
        return self.state / "read_users.json"

    @property
    def tls(self) -> Path:
        return self.state / "tls"

    @property
    def server_tls(self) -> Path:
        """The server's own copy of its certificate and key (the authority's key stays apart)."""
        return self.state / "server-tls"

    def client_settings(self, user: str) -> Path:
        return self.state / f"{user}.env"


def check_user_name(user: str) -> None:
    if not USER_NAME.fullmatch(user):
        raise UserError(
            f"add-user {user!r}: a user name is a letter, then up to 63 letters, digits, "
            "'_', '.' or '-'"
        )


def state_paths(config: TeamServerConfig, root: Path) -> StatePaths:
    return StatePaths((root / config.state_dir).resolve())  # an absolute state_dir stays


def load_secrets(paths: StatePaths) -> dict[str, str]:
    """The generated secrets, created on first start (never MLflow's or anyone's default)."""
    kept: dict[str, str] = {}
    if paths.secrets.exists():
        try:
            kept = dict(json.loads(paths.secrets.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise UserError(
                f"{paths.secrets}: not the JSON `digits server start` wrote; restore it from a "
                "backup (the database and admin passwords are in it)"
            ) from None
    missing = [name for name in SECRET_NAMES if name not in kept]  # a state from before
    if missing:
        kept |= {name: secrets.token_urlsafe(24) for name in missing}
        write_private_text(paths.secrets, json.dumps(kept, indent=2) + "\n")
    return kept


def is_wildcard(host: str) -> bool:
    return host in WILDCARDS


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def public_address(config: TeamServerConfig) -> str:
    """The name or address users reach the server by, as their settings and the certificate
    name it: never a wildcard, which no client can connect to."""
    address = config.address or config.host
    if is_wildcard(address):
        raise UserError(
            f"params.yaml: server.host {config.host} listens on every address; set "
            "server.address to the name or address teammates reach this machine by"
        )
    return address


def url_host(address: str) -> str:
    """``address`` as it goes into a URL (an IPv6 literal in brackets)."""
    literal = ip_literal(address)
    return f"[{address}]" if literal is not None and literal.version == 6 else address


def tracking_uri_of(config: TeamServerConfig) -> str:
    scheme = "https" if config.tls else "http"
    return f"{scheme}://{url_host(public_address(config))}:{config.port}"


def check_exposure(config: TeamServerConfig) -> None:
    """Refuse to accept other machines' connections in clear text unless told to."""
    if config.tls or config.allow_clear_text:
        return
    beyond = [
        f"server.{name} {value}"
        for name, value in (("host", config.host), ("database_host", config.database_host))
        if not is_loopback(value)
    ] + [f"server.allowed_networks {network}" for network in config.allowed_networks]
    if beyond:
        raise UserError(
            f"params.yaml: {beyond[0]} reaches beyond this machine with server.tls false: "
            "passwords would cross the network in clear text; turn tls on, or set "
            "server.allow_clear_text: true to accept that"
        )
