"""Tracking: one store per project, also for runs that DVC queues in temporary copies."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from digit_recognizer import tracking
from digit_recognizer.config import MlflowConfig


def test_queued_experiment_copies_resolve_to_the_workspace_root(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    queued_copy = tmp_path / ".dvc" / "tmp" / "exps" / "run" / "abc123"
    queued_copy.mkdir(parents=True)
    (queued_copy / "dvc.yaml").write_text("stages: {}\n")
    assert tracking.project_root(queued_copy) == tmp_path
    assert tracking.project_root(tmp_path / "src") == tmp_path


def test_default_store_is_absolute_sqlite_at_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tracking.Store.for_project(MlflowConfig(), tmp_path)
    assert store.uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert store.artifact_location == (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.Store.for_project(MlflowConfig(), tmp_path).artifact_location is None


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_a_failing_stage_never_leaves_its_run_running(
    mlflow_store: str, error: type[BaseException], status: str
) -> None:
    store = tracking.Store(mlflow_store, "tracking-test", None)
    with pytest.raises(error), tracking.run(store, "doomed") as run_id:
        raise error()
    assert mlflow.MlflowClient(mlflow_store).get_run(run_id).info.status == status
