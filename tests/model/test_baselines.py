"""Baselines and the report: classical models on tiny data; the report is built from metrics."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from digit_recognizer.cli import main
from digit_recognizer.evaluation.comparison import write_report
from digit_recognizer.evaluation.model_scores import HEADLINE_METRICS
from digit_recognizer.models.classical import BASELINES


@pytest.mark.usefixtures("prepared_project")  # given prepared tiny data, its robustness set
def test_baselines_are_scored_tracked_and_logged_with_signatures() -> None:
    # when the baselines stage runs
    assert main(["baselines"]) == 0
    # then each one has the same DVC headline metrics as the neural networks, and every score
    # (per class too, and the split they come from) beside its plots
    for name in BASELINES:
        metrics = json.loads(Path(f"metrics/{name}.json").read_text())
        # (feedback_accuracy only once people have corrected answers: none here)
        assert set(metrics) == set(HEADLINE_METRICS) - {"feedback_accuracy"}, name
        scores = json.loads(Path(f"reports/{name}/scores.json").read_text())
        assert {"evaluation_recall_0", "validation_accuracy", *metrics} <= set(scores), name
        assert scores["feedback_rows"] == 0, name
        assert scores["evaluation_split"] == "test"
        assert (Path("reports") / name / "confusion_matrix.png").exists()
    # and an MLflow run whose sklearn model takes Kaggle pixel columns
    runs = mlflow.search_runs(
        experiment_names=["digit-recognizer"],
        output_format="list",
        filter_string="tags.stage = 'baselines'",
    )
    latest = {run.data.tags["family"]: run for run in reversed(runs)}
    assert set(latest) == set(BASELINES)
    knn = latest["knn"]
    assert knn.data.metrics["evaluation_accuracy"] == pytest.approx(
        json.loads(Path("metrics/knn.json").read_text())["evaluation_accuracy"], abs=1e-6
    )
    logged = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{knn.info.run_id}'", output_format="list"
    )
    assert logged, "the knn run logged a model"
    info = mlflow.models.get_model_info(logged[0].model_uri)
    assert info.signature is not None and info.signature.inputs.input_names()[0] == "pixel0"


def test_report_names_every_model_with_its_accuracy_from_the_scores(tmp_path: Path) -> None:
    # given scores files with distinctive accuracies
    accuracies = {
        "ann": 0.9831,
        "cnn": 0.9942,
        "knn": 0.9712,
        "decision_tree": 0.8765,
        "random_forest": 0.9654,
        "logistic_regression": 0.9213,
    }
    files = {}
    for index, (name, accuracy) in enumerate(accuracies.items()):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(
            json.dumps(
                {
                    "evaluation_split": "test",
                    "evaluation_accuracy": accuracy,
                    "evaluation_macro_f1": accuracy - 0.001,
                    "robust_accuracy": accuracy - 0.1,
                    "train_seconds": 10.0 + index,
                    "latency_ms_batch1": 0.5 + index,
                    "latency_ms_batch256": 0.01,
                    "parameters": 1000 * (index + 1),
                    "model_size_bytes": 2048.0,
                }
            )
        )
    # when the report is written
    write_report(files, tmp_path / "reports")
    summary = (tmp_path / "reports" / "summary.md").read_text()
    # then every model appears with its accuracy, ranked, next to the reference projects' figures
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "%" in line]
    ranked = sorted(accuracies, key=accuracies.__getitem__, reverse=True)
    assert [row.split("|")[2].strip() for row in rows] == ranked
    for name, accuracy in accuracies.items():
        assert f"| {name} |" in summary and f"{accuracy:.2%}" in summary, name
        assert f"{accuracy - 0.1:.2%}" in summary, f"{name}: its robustness-set accuracy"
    assert "97.77%" in summary and "99.12%" in summary and "95.99%" in summary
    assert "the CNN beats the ANN (99.42% vs 98.31%" in summary
    assert "beats the best classical model (knn, 97.12%) by 2.30 points" in summary
    assert (tmp_path / "reports" / "comparison.png").stat().st_size > 1000
