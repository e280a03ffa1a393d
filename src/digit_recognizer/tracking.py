"""The only module that talks to MLflow directly.

Default store: ``sqlite:///<project root>/mlflow.db`` with artifacts in ``<project root>/mlruns``;
``MLFLOW_TRACKING_URI`` points every stage at another store (a server, PostgreSQL, ...).
The project root is found from the working directory, and a run started by
``dvc exp run --queue`` (inside ``<root>/.dvc/tmp/exps/...``) resolves to the same root so
queued experiments land in the same store as workspace runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digit_recognizer.config import MlflowConfig

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
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


def activate(store: Store) -> str:
    """Point the fluent API at the store's experiment (created on first use); return its id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(store.uri)
    experiment = mlflow.get_experiment_by_name(store.experiment_name)
    if experiment is None:
        try:
            experiment_id = mlflow.create_experiment(
                store.experiment_name, artifact_location=store.artifact_location
            )
        except MlflowException:  # another stage created it a moment ago
            experiment_id = mlflow.get_experiment_by_name(store.experiment_name).experiment_id  # type: ignore[union-attr]
    else:
        experiment_id = experiment.experiment_id
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
    """Tags that tie a run to code, data and the DVC stage/experiment that produced it."""
    candidates = {
        "git_commit": git_commit(root),
        "data_md5": data_md5,
        "dvc_stage": os.environ.get("DVC_STAGE"),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME"),
    }
    return {key: value for key, value in candidates.items() if value}


@contextlib.contextmanager
def run(
    store: Store,
    name: str,
    tags: Mapping[str, str] | None = None,
    *,
    run_id: str | None = None,
    nested: bool = False,
) -> Iterator[str]:
    """Start (or resume, given ``run_id``) a run; it always ends FINISHED, FAILED or KILLED."""
    import mlflow

    activate(store)
    active = mlflow.start_run(
        run_id=run_id, run_name=None if run_id else name, nested=nested, tags=dict(tags or {})
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
