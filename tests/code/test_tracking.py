"""Tracking: one store per project, also for runs that DVC queues in temporary copies."""

from __future__ import annotations

import http.server
import os
import socket
import socketserver
import subprocess
import threading
from pathlib import Path

import mlflow
import pytest

from digit_recognizer import tracking
from digit_recognizer.config import MlflowConfig
from tests.helpers.servers import free_port


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


def test_a_trial_run_whose_parameters_fail_to_log_ends_failed(mlflow_store: str) -> None:
    store = tracking.Store(mlflow_store, "tracking-test", None)
    with tracking.run(store, "search") as parent_id:
        children = tracking.ChildRuns(store, parent_id, key_tag="trial_id")
        # a parameter name that no MLflow store accepts
        with pytest.raises(mlflow.exceptions.MlflowException):
            children.start("0", "trial-0", {"units?": 8}, {})
    client = mlflow.MlflowClient(mlflow_store)
    child = client.search_runs(
        [client.get_experiment_by_name("tracking-test").experiment_id],  # type: ignore[union-attr]
        f"tags.mlflow.parentRunId = '{parent_id}'",
    )
    assert [run.info.status for run in child] == ["FAILED"]


def test_runs_left_running_by_a_killed_process_are_closed_by_the_next_run(
    mlflow_store: str,
) -> None:
    # given a train run whose process died without clean-up, and one of a live process
    store = tracking.Store(mlflow_store, "orphans-test", None)
    client = mlflow.MlflowClient(mlflow_store)
    experiment_id = tracking.activate(store)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stage = {"stage": "train", "family": "ann", tracking.HOST_TAG: socket.gethostname()}
    orphan = client.create_run(
        experiment_id, tags={**stage, tracking.PROCESS_TAG: str(dead.pid)}
    ).info.run_id
    alive = client.create_run(
        experiment_id, tags={**stage, tracking.PROCESS_TAG: str(os.getpid())}
    ).info.run_id
    other_family = client.create_run(
        experiment_id, tags={**stage, "family": "cnn", tracking.PROCESS_TAG: str(dead.pid)}
    ).info.run_id
    # when the stage runs again
    with tracking.run(store, "train-ann", {"stage": "train", "family": "ann"}):
        pass
    # then the orphan is closed as KILLED; a live process's run and other stages are left alone
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"
    assert client.get_run(other_family).info.status == "RUNNING"


def test_a_server_is_down_when_health_does_not_answer_and_a_database_never_is(
    mlflow_store: str,
) -> None:
    # given a port nothing listens on, and one that answers /health
    closed = free_port()
    with socketserver.TCPServer(("127.0.0.1", 0), HealthAnswer) as answering:
        threading.Thread(target=answering.serve_forever, daemon=True).start()
        port = answering.server_address[1]
        # then only the silent server is down, at once (no retries); a database is never down
        assert tracking.server_down(f"http://127.0.0.1:{closed}")
        assert not tracking.server_down(f"http://127.0.0.1:{port}")
        assert not tracking.server_down(mlflow_store)
        answering.shutdown()


class HealthAnswer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass
