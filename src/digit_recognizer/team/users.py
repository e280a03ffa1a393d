"""The team's users: created through MLflow's auth app, each handed one settings file that
holds only what that user needs (read users get no lock credentials, nobody the store's)."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from digit_recognizer.config import MlflowConfig
from digit_recognizer.config.environment import CERTIFICATE_VARIABLE
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_private_text
from digit_recognizer.team.state import ADMIN_USER, Permission
from digit_recognizer.tracking import Registry, Store, activate

AUTHORITY_EXPANSION = "${digits_ca}"  # where the settings file saved the team's authority


def _single_quoted(value: str) -> str:
    """``value`` as one shell word, the authority's expansion left to the shell."""
    quoted = "'" + value.replace("'", "'\"'\"'") + "'"
    quoted = quoted.replace(AUTHORITY_EXPANSION, "'\"" + AUTHORITY_EXPANSION + "\"'")
    return quoted.removeprefix("''").removesuffix("''") or "''"


def write_client_settings(
    path: Path,
    tracking_uri: str,
    user: str,
    password: str,
    databases: Mapping[str, str],
    authority: Path | None,
) -> None:
    """A shell file a user sources on any machine: the tracking server's URL and credentials,
    and ``databases`` (the variables naming the databases this user may use). With our own
    certificate authority it carries the authority's certificate (public) and saves it under
    the user's config folder, where MLflow and libpq read it."""
    settings = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
    }
    lines = [f"# digit-recognizer: {user} on {tracking_uri}; use it with: source {path.name}"]
    if authority is not None:
        settings[CERTIFICATE_VARIABLE] = AUTHORITY_EXPANSION
        file_name = re.sub(r"[^A-Za-z0-9._-]", "_", tracking_uri.split("://", 1)[1]) + "-ca.pem"
        lines += [
            f'digits_ca="${{XDG_CONFIG_HOME:-$HOME/.config}}/digit-recognizer/{file_name}"',
            'mkdir -p "${digits_ca%/*}" && cat > "$digits_ca" <<\'DIGITS_CA\'',
            authority.read_text().strip(),
            "DIGITS_CA",
        ]
    settings.update(databases)
    lines += [f"export {name}={_single_quoted(value)}" for name, value in settings.items()]
    lines += ["unset digits_ca"] if authority is not None else []
    write_private_text(path, "\n".join(lines) + "\n")


def add_user(
    tracking_uri: str,
    admin_password: str,
    authority: Path | None,
    mlflow_config: MlflowConfig,
    user: str,
    permission: Permission,
) -> str:
    """Create ``user`` with a generated password (returned); ``edit`` may log runs and move
    aliases of the project's experiment and registered model, ``read`` may only look. The
    name is checked by the caller, before anything is written."""
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    password = secrets.token_urlsafe(18)
    _act_as_admin(admin_password, authority)
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
    return password


def _act_as_admin(admin_password: str, authority: Path | None) -> None:
    """MLflow's clients read their credentials and trusted certificate from the environment."""
    settings: Mapping[str, str] = {
        "MLFLOW_TRACKING_USERNAME": ADMIN_USER,
        "MLFLOW_TRACKING_PASSWORD": admin_password,
        **({CERTIFICATE_VARIABLE: str(authority)} if authority else {}),
    }
    os.environ.update(settings)


def _project_resources(tracking_uri: str, config: MlflowConfig) -> list[tuple[str, str]]:
    """The project's experiment and registered model, created (as admin) if new."""
    store = Store(tracking_uri, config.experiment_name, None)
    experiment_id = activate(store)
    Registry(store, config.registered_model_name).create_if_missing()
    return [("experiment", experiment_id), ("registered_model", config.registered_model_name)]
