"""A run's life: started, tagged with its lineage, logged into, ended; orphans closed."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from digit_recognizer.config.environment import environment
from digit_recognizer.tracking.store import Store, activate

HOST_TAG = "host"
PROCESS_TAG = "process_id"
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
# An evaluation run's per-image predictions on its evaluation split (SplitPredictions).
PREDICTIONS_ARTIFACT = "evaluation/predictions.json"
ROBUSTNESS_PREDICTIONS_ARTIFACT = "evaluation/robustness_predictions.json"
FEEDBACK_PREDICTIONS_ARTIFACT = "evaluation/feedback_predictions.json"  # feedback-eval


def git_commit(root: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def lineage_tags(
    root: Path, data_md5: str | None, stage: str, family: str | None = None
) -> dict[str, str]:
    """Tags that tie a stage's run (of one family or baseline) to code, data (the DVC hash of
    the data actually read) and the DVC stage/experiment; with ``stage`` and ``family``, a run
    its process left RUNNING is found and closed (see :func:`run`)."""
    candidates = {
        "stage": stage,
        "family": family,
        "git_commit": git_commit(root),
        "data_md5": data_md5,
        "dvc_stage": environment().dvc_stage,
        "dvc_experiment": environment().dvc_experiment,
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


def log_datasets(splits: list[tuple[Path, str]]) -> None:
    """Each split file (an .npz of images and labels) as an input of the active run, in its
    context (training, validation, evaluation, ...): named after the file, with its md5 (DVC's
    hash of a file) as the digest and its path in the project as the source, so the runs
    table's Dataset column and filter say which data each run used. Missing or empty files
    (no corrections yet) are left out."""
    import warnings

    import mlflow
    import numpy as np
    from mlflow.data.numpy_dataset import from_numpy

    from digit_recognizer.files import file_digest

    for path, context in splits:
        if not path.exists():
            continue
        with np.load(path) as arrays:
            images = arrays["images"]
            # unlabelled (Kaggle's test.csv): features only
            labels = {"targets": arrays["labels"]} if "labels" in arrays.files else {}
        if not len(images):  # no corrections yet: nothing was used
            continue
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and warns that a path is ambiguous
            warnings.filterwarnings("ignore", message="The specified dataset source can be")
            dataset = from_numpy(
                images,
                source=path.as_posix(),
                name=path.stem,
                digest=file_digest(path, "md5"),
                **labels,
            )
        mlflow.log_input(dataset, context=context)


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


def load_run_dict(run_id: str, name: str, store: Store) -> Any | None:
    """A JSON artifact of a run (None when the run or the artifact is gone)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(store.uri)
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{name}")
    except (MlflowException, OSError):
        return None
