"""End to end: real `dvc repro` in a temporary git copy of the repository with tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.helpers.pipeline import STAGES, git_copy_with_tiny_data, ran_stages, run
from tests.helpers.project import ReproducedProject


def champion_version(environment: dict[str, str]) -> str:
    client = mlflow.MlflowClient(environment["MLFLOW_TRACKING_URI"])
    return str(client.get_model_version_by_alias("digit-recognizer", "champion").version)


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_then_only_what_changed(reproduced: ReproducedProject) -> None:
    # given a git copy of the repository with tiny data and tiny budgets
    tmp_path, environment = reproduced.folder, reproduced.environment

    # when the pipeline runs, then every stage runs, quietly, and every declared output exists
    output = reproduced.output
    assert ran_stages(output) == set(STAGES)
    chatter = [
        line
        for line in output.splitlines()
        if any(noise in line for noise in ("oneDNN", "absl", "Warning", "WARNING", "INFO"))
    ]
    assert not chatter, f"library chatter on the console: {chatter[:5]}"
    for name in (
        "metrics/ann.json",
        "metrics/cnn.json",
        "metrics/tune_cnn.json",
        "plots/cnn/confusion.csv",
        "plots/ann/history.csv",
        "reports/summary.md",
        "metrics/knn.json",
        "reports/promotion.json",
        "reports/cnn/scores.json",
        "reports/eda/statistics.json",
        "submissions/cnn.csv",
        "models/cnn.keras",
    ):
        assert (tmp_path / name).exists(), name
    metrics = json.loads((tmp_path / "reports/cnn/scores.json").read_text())
    assert metrics["evaluation_split"] == "test"
    assert metrics["evaluation_accuracy"] >= 0.5, "the tiny CNN learns the synthetic digits"
    shown = run(["dvc", "metrics", "show"], tmp_path, environment)
    assert "evaluation_accuracy" in shown and "failed to load" not in shown, shown
    assert max(len(line) for line in shown.splitlines()) <= 160, "fits a 160-column terminal"

    # and the candidate with the better validation accuracy became champion through the gates
    promotion = json.loads((tmp_path / "reports/promotion.json").read_text())
    chosen = max(promotion["candidates"], key=lambda item: item["validation_accuracy"])
    assert promotion["decision"] == "promoted", promotion["reason"]
    assert promotion["candidate_version"] == chosen["version"] == champion_version(environment)
    assert all(gate["passed"] for gate in promotion["gates"])
    # and its submission has one row per test image, in Kaggle's format
    rows = (tmp_path / "submissions/submission.csv").read_text().splitlines()
    assert rows[0] == "ImageId,Label" and len(rows) == 1 + 40
    assert [row.split(",")[0] for row in rows[1:]] == [str(i) for i in range(1, 41)]

    # and MLflow holds the runs and one registered version per family
    client = mlflow.MlflowClient(environment["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name = 'digit-recognizer'")
    assert sorted(version.tags["family"] for version in versions) == ["ann", "cnn"]
    # each version's tags are few (the lineage, data and every score are on its runs)
    assert all(len(version.tags) <= 12 for version in versions), [v.tags for v in versions]
    experiment = client.get_experiment_by_name("digit-recognizer")
    assert experiment is not None
    # the MLflow UI opens the experiment on its training runs, and each run says what it did
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    every_run = client.search_runs([experiment.experiment_id], max_results=1000)
    undescribed = [
        run.info.run_name for run in every_run if not run.data.tags.get("mlflow.note.content")
    ]
    assert not undescribed, f"runs without a description: {undescribed}"
    assert all("% on test" in str(version.description) for version in versions)
    evaluation_runs = client.search_runs([experiment.experiment_id], "tags.stage = 'evaluate'")
    assert {run.info.status for run in evaluation_runs} == {"FINISHED"}
    assert all(
        run.data.metrics["evaluation_accuracy"]
        == pytest.approx(
            json.loads((tmp_path / f"metrics/{run.data.tags['family']}.json").read_text())[
                "evaluation_accuracy"
            ],
            abs=1e-6,
        )
        for run in evaluation_runs
    ), "DVC and MLflow must hold the same numbers"
    # and every training and evaluation run names its data: the DVC path, the file's md5
    from digit_recognizer.files import file_digest

    for stage, expected in [
        ("train", {("train", "training"), ("validation", "validation")}),
        ("evaluate", {("test", "evaluation"), ("robustness", "robustness")}),
    ]:
        for stage_run in client.search_runs([experiment.experiment_id], f"tags.stage = '{stage}'"):
            logged = client.get_run(stage_run.info.run_id).inputs
            assert logged is not None, stage
            inputs = logged.dataset_inputs
            named = {
                (found.dataset.name, tag.value)
                for found in inputs
                for tag in found.tags
                if tag.key == "mlflow.data.context"
            }
            assert named == expected, (stage, named)
            for found in inputs:
                source = json.loads(found.dataset.source)["uri"]
                assert found.dataset.digest == file_digest(tmp_path / source, "md5"), source

    # when nothing changed, a second repro is a no-op
    assert ran_stages(run(["dvc", "repro"], tmp_path, environment)) == set()

    # when one CNN parameter changes, only the CNN stages (and what reads them) rerun
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["cnn"]["batch_size"] = 16
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert ran_stages(run(["dvc", "repro"], tmp_path, environment)) == {
            "train@cnn",
            "evaluate@cnn",
            "report",
            "promote",
        }
    finally:  # the committed state back, for the other tests of this project
        run(["git", "checkout", "--", "."], tmp_path, environment)
        run(["dvc", "checkout", "--force"], tmp_path, environment)


@pytest.mark.slow
def test_kaggle_shaped_data_runs_through_promotion_to_a_submission(tmp_path: Path) -> None:
    # given Kaggle's layout: labelled train.csv, test.csv without labels
    environment = git_copy_with_tiny_data(tmp_path, labelled_test=False)
    # when the whole pipeline runs
    assert ran_stages(run(["dvc", "repro"], tmp_path, environment)) == set(STAGES)
    # then every model was scored on the holdout, and a champion was promoted through the gates
    for model in ("ann", "cnn", "knn"):
        scores = json.loads((tmp_path / f"reports/{model}/scores.json").read_text())
        assert scores["evaluation_split"] == "holdout", model
    promotion = json.loads((tmp_path / "reports/promotion.json").read_text())
    assert promotion["decision"] == "promoted" and promotion["evaluation_split"] == "holdout"
    assert promotion["candidate_version"] == champion_version(environment)
    # and the deliverable: one prediction per unlabelled test row, ImageId from 1
    rows = (tmp_path / "submissions/submission.csv").read_text().splitlines()
    assert rows[0] == "ImageId,Label" and len(rows) == 1 + 50
    assert rows[1].startswith("1,") and rows[-1].startswith("50,")
    assert all(row.split(",")[1] in "0123456789" for row in rows[1:])
