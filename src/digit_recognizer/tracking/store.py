"""Where runs go: the project root, the tracking URI, the experiment (created here only).

Default store: ``sqlite:///<project root>/mlflow.db`` with artifacts in ``<project root>/mlruns``;
``MLFLOW_TRACKING_URI`` points every stage at another store (a server, PostgreSQL, ...).
The project root is found from the working directory, and a run started by
``dvc exp run --queue`` (inside ``<root>/.dvc/tmp/exps/...``) resolves to the same root so
queued experiments land in the same store as workspace runs.
"""

from __future__ import annotations

import os
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from digit_recognizer.config import MlflowConfig
from digit_recognizer.config.environment import environment

# MLflow 3 opens an experiment on its GenAI overview unless it is marked as model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
_DVC_TEMPORARY_WORKSPACES = ("/.dvc/tmp/",)


def project_root(start: Path | None = None) -> Path:
    """The folder holding dvc.yaml (or params.yaml) above ``start``, outside DVC's temp copies."""
    here = (start or Path.cwd()).resolve()
    text = here.as_posix()
    for marker in _DVC_TEMPORARY_WORKSPACES:
        if marker in text:
            return Path(text.split(marker, 1)[0])
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists() or (folder / "params.yaml").exists():
            return folder
    return here


def default_tracking_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').as_posix()}"


def tracking_uri(root: Path) -> str:
    return environment().tracking_uri or default_tracking_uri(root)


@dataclass(frozen=True)
class Store:
    """Where runs go: the tracking URI, the experiment, and (for the local store) artifacts."""

    uri: str
    experiment_name: str
    artifact_location: str | None

    @classmethod
    def for_project(cls, config: MlflowConfig, root: Path) -> Store:
        uri = tracking_uri(root)
        local = uri == default_tracking_uri(root)
        return cls(uri, config.experiment_name, (root / "mlruns").as_uri() if local else None)


# MLflow retries a failed HTTP request 7 times with doubling waits (over 4 minutes) before a
# stage may fail; 4 retries ride out a server restart (about 30 s) and fail a stage in time.
HTTP_RETRIES_VARIABLE = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
HTTP_RETRIES = "4"
# What requests/urllib3 say when retries ran out (MLflow wraps them in MlflowException).
_UNREACHABLE_SIGNS = ("Max retries exceeded", "Failed to establish a new connection")
_ERROR_ANSWERS = re.compile(r"too many (\d{3}) error responses")


def _what_failed(text: str) -> tuple[str, str]:
    """What went wrong with the server, and what to do about it (from urllib3's words)."""
    start = "start it (digits server start) or check MLFLOW_TRACKING_URI"
    answered = _ERROR_ANSWERS.search(text)
    if answered:
        return f"answered HTTP {answered[1]} to every retry", "its log says why (mlflow.log)"
    if "SSLError" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "TLS failed: its certificate is not the one this machine trusts",
            "source your settings file again (it names the certificate)",
        )
    if "refused" in text.lower():
        return "connection refused", start
    return "no answer", start


# For every `mlflow server` or `mlflow ui` this project starts: MLflow 3 also starts a job
# runner and seven job consumers for GenAI features the project never uses, processes whose
# start-up and polling competed with training on 2 cores.
SERVER_ENVIRONMENT = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def healthy(tracking_uri: str, authority: Path | None = None) -> bool:
    """Whether an MLflow server answers /health at once: one request, no retries."""
    try:
        with urllib.request.urlopen(
            f"{tracking_uri}/health",
            timeout=5,
            context=ssl.create_default_context(cafile=str(authority) if authority else None),
        ) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def server_down(tracking_uri: str) -> bool:
    """A tracking server (http or https) that does not answer /health; a database or a
    folder is never "down" here (opening it says what is wrong)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return False
    certificate = environment().tracking_certificate
    return not healthy(tracking_uri, Path(certificate) if certificate else None)


def unreachable_server(error: BaseException) -> str | None:
    """One line for an error that means the tracking server could not be used, else None."""
    text = str(error)
    if not any(sign in text for sign in _UNREACHABLE_SIGNS):
        return None
    reason, advice = _what_failed(text)
    uri = environment().tracking_uri or "the tracking server"
    return (
        f"MLflow tracking server {uri} unreachable ({reason}); {advice}, "
        "then run this again: a run left RUNNING is closed then"
    )


def activate(store: Store) -> str:
    """Point the fluent API at the store's experiment (created on first use); return its id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault(HTTP_RETRIES_VARIABLE, HTTP_RETRIES)
    mlflow.set_tracking_uri(store.uri)
    experiment = mlflow.get_experiment_by_name(store.experiment_name)
    if experiment is None:
        try:
            experiment_id = mlflow.create_experiment(
                store.experiment_name,
                artifact_location=store.artifact_location,
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except MlflowException:  # another stage created it a moment ago
            experiment_id = mlflow.get_experiment_by_name(store.experiment_name).experiment_id  # type: ignore[union-attr]
    else:
        experiment_id = experiment.experiment_id
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before the project set its kind
            mlflow.MlflowClient(store.uri).set_experiment_tag(
                experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
            )
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)
