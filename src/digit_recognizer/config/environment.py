"""The environment variables the project reads, parsed into one typed, frozen object.

params.yaml says what a stage computes; these say where it runs and as whom (the tracking
store, the DVC stage or experiment running it, the team's databases and lock, credentials).
``environment()`` parses them once for each distinct environment: once in a command, again
only when a caller (a test, a sourced settings file) changed one of them.
"""

from __future__ import annotations

import functools
import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
TRACKING_USERNAME_VARIABLE = "MLFLOW_TRACKING_USERNAME"
# the authority a team server's certificate is checked against (a user's settings file sets it)
CERTIFICATE_VARIABLE = "MLFLOW_TRACKING_SERVER_CERT_PATH"
DVC_STAGE_VARIABLE = "DVC_STAGE"  # set by dvc repro / dvc exp run for the stage it runs
EXPERIMENT_VARIABLE = "DVC_EXP_NAME"  # set by `dvc exp run` for every stage it runs
LOCK_URL_VARIABLE = "DIGITS_REGISTRY_LOCK_URL"
DATABASE_URL_VARIABLE = "DIGITS_SERVER_DATABASE_URL"
LOCK_DATABASE_URL_VARIABLE = "DIGITS_SERVER_LOCK_DATABASE_URL"
PREDICTION_LOG_URL_VARIABLE = "DIGITS_PREDICTION_LOG_URL"
POSTGRES_BIN_VARIABLE = "DIGITS_POSTGRES_BIN"  # a folder holding initdb, pg_ctl, ...
KAGGLE_USERNAME_VARIABLE = "KAGGLE_USERNAME"
KAGGLE_KEY_VARIABLE = "KAGGLE_KEY"


class Environment(BaseSettings):
    """Every variable the project reads; an empty one counts as unset."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    tracking_uri: str = Field(default="", validation_alias=TRACKING_URI_VARIABLE)
    tracking_username: str = Field(default="", validation_alias=TRACKING_USERNAME_VARIABLE)
    tracking_certificate: str = Field(default="", validation_alias=CERTIFICATE_VARIABLE)
    dvc_stage: str = Field(default="", validation_alias=DVC_STAGE_VARIABLE)
    dvc_experiment: str = Field(default="", validation_alias=EXPERIMENT_VARIABLE)
    # The team's lock database (a user's settings file sets it); empty: a lock file
    registry_lock_url: str = Field(default="", validation_alias=LOCK_URL_VARIABLE)
    # An existing PostgreSQL for `digits server` (overrides server.database_url in params)
    server_database_url: str = Field(default="", validation_alias=DATABASE_URL_VARIABLE)
    server_lock_database_url: str = Field(default="", validation_alias=LOCK_DATABASE_URL_VARIABLE)
    # The prediction log (overrides monitoring.database_url; the team's settings set it)
    prediction_log_url: str = Field(default="", validation_alias=PREDICTION_LOG_URL_VARIABLE)
    postgres_bin: str = Field(default="", validation_alias=POSTGRES_BIN_VARIABLE)
    kaggle_username: str = Field(default="", validation_alias=KAGGLE_USERNAME_VARIABLE)
    kaggle_key: str = Field(default="", validation_alias=KAGGLE_KEY_VARIABLE)


_VARIABLES = tuple(str(field.validation_alias) for field in Environment.model_fields.values())


def environment() -> Environment:
    """The environment as it is now, parsed once per distinct set of values."""
    return _parsed(tuple(os.environ.get(name) for name in _VARIABLES))


@functools.cache
def _parsed(values: tuple[str | None, ...]) -> Environment:
    return Environment()  # reads os.environ, which holds ``values``
