"""Registry: the champion moves only through gates; forced moves are recorded; rollback works."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path

import mlflow
import pytest

from digit_recognizer.cli import main
from digit_recognizer.config import Family, load_params
from digit_recognizer.registry import CHAMPION, HISTORY_TAG, promote, registry_table, rollback
from digit_recognizer.training import TrainedModel
from tests.registry_fixtures import register_candidate


@pytest.fixture
def registry_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path) -> Path:
    """A project with its own (empty) registry store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'registry.db'}")
    return project


def champion() -> str | None:
    try:
        return str(
            mlflow.MlflowClient().get_model_version_by_alias("digit-recognizer", CHAMPION).version
        )
    except mlflow.exceptions.MlflowException:
        return None


def write_trained(families: dict[Family, str]) -> None:
    Path("models").mkdir(exist_ok=True)
    for family, version in families.items():
        record = TrainedModel(
            family=family,
            run_id="",
            model_uri="",
            registered_name="digit-recognizer",
            version=version,
            epochs_trained=1,
            train_seconds=1.0,
        )
        Path(f"models/{family}.json").write_text(json.dumps(asdict(record)))


def test_first_promotion_then_a_worse_candidate_is_rejected(registry_project: Path) -> None:
    params = load_params(Path("params.yaml"))
    # given two candidates and no champion
    ann = register_candidate(registry_project, "ann", 0.983)
    cnn = register_candidate(registry_project, "cnn", 0.994)
    write_trained({"ann": ann, "cnn": cnn})
    # when the promote stage runs, then the best passing candidate becomes champion
    assert main(["promote"]) == 0
    assert champion() == cnn
    report = json.loads(Path("metrics/promotion.json").read_text())
    assert report["decision"] == "promoted" and report["candidate_version"] == cnn
    # given a newer but worse CNN
    worse = register_candidate(registry_project, "cnn", 0.990)
    write_trained({"ann": ann, "cnn": worse})
    # when promoting, then it is rejected, the failing gate is named, and the champion stays
    result = promote(params, registry_project)
    assert result.decision == "rejected"
    assert "min_improvement" in result.reason
    assert champion() == cnn
    version = mlflow.MlflowClient().get_model_version("digit-recognizer", worse)
    assert version.tags["promotion_decision"] == "rejected"
    assert "min_improvement FAIL" in version.tags["promotion_gates"]


def test_each_gate_can_refuse(registry_project: Path) -> None:
    params = load_params(Path("params.yaml"))
    low_recall = register_candidate(registry_project, "cnn", 0.995, worst_recall=0.90)
    slow = register_candidate(registry_project, "cnn", 0.995, latency_ms=500.0)
    weak = register_candidate(registry_project, "ann", 0.95)
    for version, gate in (
        (low_recall, "min_class_recall"),
        (slow, "max_latency_ms"),
        (weak, "min_test_accuracy"),
    ):
        report = promote(params, registry_project, version=version)
        assert report.decision == "rejected" and report.reason == f"failed gates: {gate}"
    assert champion() is None


def test_forced_promotion_is_recorded_and_rollback_restores(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = load_params(Path("params.yaml"))
    good = register_candidate(registry_project, "cnn", 0.994)
    bad = register_candidate(registry_project, "ann", 0.90)
    assert promote(params, registry_project, version=good).decision == "promoted"
    # when a gated-out version is forced
    assert main(["promote", "--version", bad, "--force"]) == 0
    assert champion() == bad
    tags = mlflow.MlflowClient().get_model_version("digit-recognizer", bad).tags
    assert tags["promotion_forced"] == "true"
    description = mlflow.MlflowClient().get_model_version("digit-recognizer", bad).description
    assert "forced past failing gates: min_test_accuracy" in str(description)
    # when rolled back, then the previous champion serves again
    assert main(["rollback"]) == 0
    assert champion() == good
    assert f"from version {bad} back to version {good}" in capsys.readouterr().out
    # and a second rollback has nowhere to go
    assert main(["rollback"]) == 2
    assert "nothing to roll back to" in capsys.readouterr().err
    table = registry_table(params, registry_project)
    assert "champion" in table and "cnn" in table


def test_racing_promotions_leave_one_champion_and_full_history(registry_project: Path) -> None:
    params = load_params(Path("params.yaml"))
    versions = [
        register_candidate(registry_project, "cnn", 0.99 + step / 1000) for step in range(4)
    ]
    threads = [
        threading.Thread(
            target=promote,
            args=(params, registry_project),
            kwargs={"version": version, "force": True},
        )
        for version in versions
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client = mlflow.MlflowClient()
    history = json.loads(client.get_registered_model("digit-recognizer").tags[HISTORY_TAG])
    aliases = client.get_registered_model("digit-recognizer").aliases
    assert sorted(history) == sorted(versions), "every promotion is in the history"
    assert str(aliases[CHAMPION]) == history[-1], "one champion: the last promoted"
    assert rollback(params, registry_project) == (history[-1], history[-2])


def test_promote_without_candidates_fails_clearly(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["promote", "--version", "99"]) == 2
    assert "has no version 99" in capsys.readouterr().err
