"""End to end: real `dvc repro` in a temporary git copy of the repository with tiny data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import REPOSITORY, tiny_params, write_tiny_data

STAGES = (
    "prepare",
    "baselines",
    "tune@ann",
    "tune@cnn",
    "train@ann",
    "train@cnn",
    "evaluate@ann",
    "evaluate@cnn",
    "report",
    "promote",
)


def run(command: list[str], cwd: Path, environment: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


def ran_stages(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_then_only_what_changed(tmp_path: Path) -> None:
    # given a git copy of the repository with tiny data and tiny budgets
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        if (REPOSITORY / name).is_file() and name not in ("data.dvc", "dvc.lock"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / name, tmp_path / name)
    write_tiny_data(tmp_path / "data")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    store = tmp_path / "store"
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}.db",
        # dvc, and the digits commands its stages run, come from this environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for command in (
        ["git", "init", "-q"],
        ["dvc", "add", "-q", "data"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"],
    ):
        run(command, tmp_path, environment)

    # when the pipeline runs, then every stage runs and every declared output exists
    assert ran_stages(run(["dvc", "repro"], tmp_path, environment)) == set(STAGES)
    for name in (
        "metrics/ann.json",
        "metrics/cnn.json",
        "metrics/tune_cnn.json",
        "plots/cnn/confusion.csv",
        "plots/ann/history.csv",
        "reports/summary.md",
        "metrics/knn.json",
        "metrics/promotion.json",
        "submissions/cnn.csv",
        "models/cnn.keras",
    ):
        assert (tmp_path / name).exists(), name
    metrics = json.loads((tmp_path / "metrics/cnn.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert "test_accuracy" in run(["dvc", "metrics", "show"], tmp_path, environment)

    # and MLflow holds the runs and one registered version per family
    client = mlflow.MlflowClient(environment["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name = 'digit-recognizer'")
    assert sorted(version.tags["family"] for version in versions) == ["ann", "cnn"]
    experiment = client.get_experiment_by_name("digit-recognizer")
    assert experiment is not None
    train_runs = client.search_runs([experiment.experiment_id], "tags.stage = 'train'")
    assert {run.info.status for run in train_runs} == {"FINISHED"}, [
        (run.info.run_name, run.info.status, run.data.tags) for run in train_runs
    ]
    assert all(
        run.data.metrics["test_accuracy"]
        == pytest.approx(
            json.loads((tmp_path / f"metrics/{run.data.tags['family']}.json").read_text())[
                "test_accuracy"
            ],
            abs=1e-6,
        )
        for run in train_runs
    ), "DVC and MLflow must hold the same numbers"

    # when nothing changed, a second repro is a no-op
    assert ran_stages(run(["dvc", "repro"], tmp_path, environment)) == set()

    # when one CNN parameter changes, only the CNN stages (and what reads them) rerun
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["cnn"]["batch_size"] = 16
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(["dvc", "repro"], tmp_path, environment)) == {
        "train@cnn",
        "evaluate@cnn",
        "report",
        "promote",
    }
