"""Runs and what goes into them: with ``registry_client`` the only modules that call MLflow.

Default store: ``sqlite:///<project root>/mlflow.db`` with artifacts in ``<project root>/mlruns``;
``MLFLOW_TRACKING_URI`` points every stage at another store (a server, PostgreSQL, ...).
The project root is found from the working directory, and a run started by
``dvc exp run --queue`` (inside ``<root>/.dvc/tmp/exps/...``) resolves to the same root so
queued experiments land in the same store as workspace runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digit_recognizer.config import MlflowConfig

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
HOST_TAG = "host"
PROCESS_TAG = "process_id"
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
# MLflow 3 opens an experiment on its GenAI overview unless it is marked as model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# An evaluation run's per-image predictions on its evaluation split (SplitPredictions).
PREDICTIONS_ARTIFACT = "evaluation/predictions.json"
ROBUSTNESS_PREDICTIONS_ARTIFACT = "evaluation/robustness_predictions.json"
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
    return os.environ.get(TRACKING_URI_VARIABLE) or default_tracking_uri(root)


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
# What requests/urllib3 say when no server answers (MLflow wraps them in MlflowException).
_UNREACHABLE_SIGNS = ("Max retries exceeded", "Failed to establish a new connection")


def unreachable_server(error: BaseException) -> str | None:
    """One line for an error that means the tracking server did not answer, else None."""
    text = str(error)
    if not any(sign in text for sign in _UNREACHABLE_SIGNS):
        return None
    reason = "connection refused" if "refused" in text.lower() else "no answer"
    uri = os.environ.get(TRACKING_URI_VARIABLE, "the tracking server")
    return (
        f"MLflow tracking server {uri} unreachable ({reason}); start it (digits server start) "
        "or check MLFLOW_TRACKING_URI, then run this again: a run left RUNNING is closed then"
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


def git_commit(root: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def lineage_tags(root: Path, data_md5: str | None) -> dict[str, str]:
    """Tags that tie a run to code, data (the DVC hash of the data actually read), the DVC
    stage/experiment, and the process, so a run its process left RUNNING can be found."""
    candidates = {
        "git_commit": git_commit(root),
        "data_md5": data_md5,
        "dvc_stage": os.environ.get("DVC_STAGE"),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME"),
    }
    return {key: value for key, value in candidates.items() if value}


def process_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PROCESS_TAG: str(os.getpid())}


def _process_alive(process_id: str) -> bool:
    try:
        os.kill(int(process_id), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def close_orphaned_runs(store: Store, tags: Mapping[str, str]) -> list[str]:
    """End as KILLED the RUNNING runs carrying ``tags`` whose process on this host is gone
    (SIGKILL, a lost machine); runs of live processes and of other hosts are left alone."""
    import mlflow

    experiment_id = activate(store)
    conditions = [
        "attributes.status = 'RUNNING'",
        f"tags.`{HOST_TAG}` = '{socket.gethostname()}'",
        *(f"tags.`{key}` = '{value}'" for key, value in tags.items()),
    ]
    client = mlflow.MlflowClient(store.uri)
    closed = []
    for found in client.search_runs([experiment_id], " and ".join(conditions), max_results=1000):
        if not _process_alive(found.data.tags.get(PROCESS_TAG, "")):
            client.set_terminated(found.info.run_id, "KILLED")
            closed.append(found.info.run_id)
    return closed


@contextlib.contextmanager
def run(
    store: Store,
    name: str,
    tags: Mapping[str, str] | None = None,
    *,
    run_id: str | None = None,
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """Start (or resume, given ``run_id``) a run; it always ends FINISHED, FAILED or KILLED.

    Runs of the same stage (and family) that a killed process left RUNNING are closed first.
    """
    import mlflow

    activate(store)
    all_tags = {**(tags or {}), **process_tags()}
    stage_tags: dict[str, str] = {
        key: all_tags[key] for key in ("stage", "family") if key in all_tags
    }
    if "stage" in stage_tags:
        close_orphaned_runs(store, stage_tags)
    active = mlflow.start_run(
        run_id=run_id,
        run_name=None if run_id else name,
        parent_run_id=parent_run_id,
        tags=all_tags,
    )
    try:
        yield active.info.run_id
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def describe_run(text: str) -> None:
    """The one-line description the MLflow UI shows in the runs list."""
    import mlflow

    mlflow.set_tag(NOTE_TAG, text)


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    mlflow.log_params({key: str(value)[:6000] for key, value in params.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({key: float(value) for key, value in metrics.items()}, step=step)


def set_tags(tags: Mapping[str, str]) -> None:
    import mlflow

    mlflow.set_tags(dict(tags))


def log_artifacts(paths: list[Path], folder: str | None = None) -> None:
    import mlflow

    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=folder)


def log_dict(content: Any, name: str) -> None:
    import mlflow

    mlflow.log_dict(content, name)


def find_run(store: Store, tags: Mapping[str, str]) -> str | None:
    """The newest top-level run carrying all ``tags`` (to resume it instead of duplicating it)."""
    import mlflow

    experiment_id = activate(store)
    conditions = [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    runs = mlflow.MlflowClient(store.uri).search_runs(
        [experiment_id],
        " and ".join(conditions),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


class ChildRuns:
    """Nested runs under one parent, one per unit of work (a tuner trial), keyed by an id.

    A key that already has a finished run is never logged twice; an unfinished one (its process
    was killed) is deleted and started again, so re-running resumes without duplicates.
    """

    def __init__(self, store: Store, parent_run_id: str, key_tag: str) -> None:
        import mlflow

        self._client = mlflow.MlflowClient(store.uri)
        self._experiment_id = activate(store)
        self._parent_run_id = parent_run_id
        self._key_tag = key_tag
        self._open: dict[str, str] = {}
        self.finished_count = 0  # children this object ended FINISHED

    def existing(self) -> dict[str, tuple[str, str]]:
        """key -> (run id, status) for the parent's children."""
        runs = self._client.search_runs(
            [self._experiment_id],
            f"tags.mlflow.parentRunId = '{self._parent_run_id}'",
            max_results=5000,
        )
        return {
            run.data.tags[self._key_tag]: (run.info.run_id, run.info.status)
            for run in runs
            if self._key_tag in run.data.tags
        }

    def start(
        self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str | None:
        """Start the child for ``key``; None when a finished one exists already."""
        from mlflow.entities import Param

        previous = self.existing().get(key)
        if previous and previous[1] == "FINISHED":
            return None
        if previous:
            self._client.delete_run(previous[0])
        run = self._client.create_run(
            self._experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self._parent_run_id,
                self._key_tag: key,
                **tags,
                **process_tags(),
            },
        )
        run_id = run.info.run_id
        try:
            self._client.log_batch(
                run_id, params=[Param(name, str(value)) for name, value in params.items()]
            )
        except BaseException:  # never leave a run RUNNING that nothing will finish
            self._client.set_terminated(run_id, "FAILED")
            raise
        self._open[key] = run_id
        return run_id

    def log_metrics(self, key: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        run_id = self._open.get(key)
        if run_id is not None:
            self._log_batch(run_id, metrics, step or 0)

    def _log_batch(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        timestamp = _now_ms()
        self._client.log_batch(
            run_id,
            metrics=[
                Metric(name, float(value), timestamp, step) for name, value in metrics.items()
            ],
        )

    def finish(
        self, key: str, status: str, metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> None:
        run_id = self._open.pop(key, None)
        if run_id is None:
            return
        self._log_batch(run_id, metrics, 0)
        for tag, value in tags.items():
            self._client.set_tag(run_id, tag, value)
        self._client.set_terminated(run_id, status)
        self.finished_count += status == "FINISHED"

    def abort_open(self, status: str) -> None:
        """End every child still open (the search was interrupted or crashed)."""
        for key in list(self._open):
            self.finish(key, status, {}, {"trial_status": status})


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str
    version: str


def log_and_register_model(
    keras_path: Path,
    registered_name: str,
    tags: Mapping[str, str],
    python_model: Any,
    signature: Any,
) -> LoggedModel:
    """Log ``python_model`` (the Kaggle-row pyfunc) around a saved Keras model and register a
    new version."""
    import mlflow

    import digit_recognizer

    package_dir = Path(digit_recognizer.__file__).parent
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=python_model,
        artifacts={"keras_model": str(keras_path)},
        signature=signature,
        code_paths=[str(package_dir)],  # the model loads without this project installed
        pip_requirements=_pinned_requirements(),
    )
    # register_model prints "Created version ..." itself; the train stage says it in its line
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(info.model_uri, registered_name, tags=dict(tags))
    return LoggedModel(model_uri=info.model_uri, version=str(version.version))


def _pinned_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    for package in (
        "mlflow",
        "tensorflow-cpu",
        "keras",
        "numpy",
        "pandas",
        "pyarrow",
        "pyyaml",
        "pydantic",
        "scikit-learn",
    ):
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return requirements


def log_sklearn_model(estimator: Any, example: Any) -> str:
    """Log a scikit-learn model whose signature takes the columns of ``example`` (a frame)."""
    import mlflow
    from mlflow.models import infer_signature
    from skops.io import dumps, get_untrusted_types

    signature = infer_signature(example, estimator.predict(example.to_numpy()))
    # skops (no pickle) refuses types it does not know; these are the ones we just trained.
    trusted = get_untrusted_types(data=dumps(estimator))
    info = mlflow.sklearn.log_model(
        estimator,
        name="model",
        signature=signature,
        pip_requirements=_pinned_requirements(),
        skops_trusted_types=trusted,
    )
    return str(info.model_uri)


def load_run_dict(run_id: str, name: str, store: Store) -> Any | None:
    """A JSON artifact of a run (None when the run or the artifact is gone)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(store.uri)
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{name}")
    except (MlflowException, OSError):
        return None
