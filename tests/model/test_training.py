"""Training: deterministic on CPU, fully tracked, and the logged model speaks Kaggle rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from digit_recognizer.cli import main
from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS
from digit_recognizer.data.splits import load_split


@pytest.fixture
def tuned_project(prepared_project: Path) -> Path:
    """Tiny project with prepared data, its robustness set and fixed best hyperparameters for
    both families."""
    Path("hyperparameters").mkdir()
    Path("hyperparameters/ann.json").write_text(
        json.dumps(
            {
                "hidden_layers": 1,
                "units": 16,
                "activation": "relu",
                "dropout": 0.0,
                "batch_norm": False,
                "learning_rate": 0.003,
            }
        )
    )
    Path("hyperparameters/cnn.json").write_text(
        json.dumps(
            {
                "conv_blocks": 2,
                "convs_per_block": 1,
                "filters": 4,
                "kernel_size": 3,
                "batch_norm": True,
                "dropout": 0.25,
                "dense_units": 16,
                "learning_rate": 0.003,
            }
        )
    )
    return prepared_project


def test_same_seed_same_history(tuned_project: Path) -> None:
    assert main(["train", "cnn"]) == 0
    first = Path("plots/cnn/history.csv").read_text()
    shutil.rmtree("models")
    assert main(["train", "cnn"]) == 0
    assert Path("plots/cnn/history.csv").read_text() == first, "training is not deterministic"


def test_training_run_is_tracked_and_registers_a_kaggle_model(tuned_project: Path) -> None:
    # when the ANN trains
    assert main(["train", "ann"]) == 0
    record = json.loads(Path("models/ann.json").read_text())
    run = mlflow.get_run(record["run_id"])
    # then the run has the tuned and training params, per-epoch metrics with steps, and tags
    assert run.data.params["hp.units"] == "16" and run.data.params["train.max_epochs"] == "2"
    assert run.data.tags["family"] == "ann" and run.data.tags["stage"] == "train"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")
    assert [metric.step for metric in history] == [1, 2]
    # and a temperature fitted on validation, with the calibration before and after it
    metrics = run.data.metrics
    assert 0.05 <= metrics["calibration_temperature"] <= 20
    before, after = (
        metrics[f"validation_log_loss_{state}"] for state in ("uncalibrated", "calibrated")
    )
    assert after <= before + 1e-6, "the temperature is chosen to lower the validation log loss"
    assert {"validation_ece_uncalibrated", "validation_ece_calibrated"} <= metrics.keys()
    # and the registered version is tagged and loads as a pyfunc that takes Kaggle rows
    version = mlflow.MlflowClient().get_model_version("digit-recognizer", record["version"])
    assert version.tags["family"] == "ann" and version.tags["run_id"] == run.info.run_id
    model = mlflow.pyfunc.load_model(record["model_uri"])
    test = load_split(Path("prepared"), "test")
    rows = pd.DataFrame(test.images[:5].astype(np.int64), columns=list(PIXEL_COLUMNS))
    predictions = model.predict(rows)
    assert list(predictions.columns[:2]) == ["label", "prob_0"] and len(predictions) == 5
    # a bad row is refused with the reason
    rows.iloc[0, 0] = 999
    with pytest.raises(mlflow.exceptions.MlflowException, match="within 0-255"):
        model.predict(rows)


@pytest.mark.usefixtures("prepared_project")
def test_train_without_tuned_hyperparameters_fails_clearly(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "cnn"]) == 2
    error = capsys.readouterr().err
    assert "hyperparameters/cnn.json: not found; run the tune stage first" in error


def evaluation_runs(training_run_id: str) -> list[mlflow.entities.Run]:
    return mlflow.search_runs(
        experiment_names=["digit-recognizer"],
        output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{training_run_id}'",
    )


def test_evaluation_is_its_own_run_under_the_training_run(tuned_project: Path) -> None:
    # given a trained ANN
    assert main(["train", "ann"]) == 0
    record = json.loads(Path("models/ann.json").read_text())
    # when it is evaluated
    assert main(["evaluate", "ann"]) == 0
    # then the scores are on a finished run nested under the training run, which stays FINISHED
    (evaluation,) = evaluation_runs(record["run_id"])
    assert evaluation.info.status == "FINISHED"
    assert evaluation.data.tags["stage"] == "evaluate"
    assert evaluation.data.tags["evaluation_split"] == "test"
    metrics = json.loads(Path("metrics/ann.json").read_text())
    assert evaluation.data.metrics["evaluation_accuracy"] == pytest.approx(
        metrics["evaluation_accuracy"]
    )
    assert mlflow.get_run(record["run_id"]).info.status == "FINISHED"
    version = mlflow.MlflowClient().get_model_version("digit-recognizer", record["version"])
    assert version.tags["evaluation_run_id"] == evaluation.info.run_id
    assert version.tags["evaluation_split"] == "test"
    # and the robustness set and the calibration are scored beside the plain split
    scores = json.loads(Path("reports/ann/scores.json").read_text())
    for key in ("robust_accuracy", "evaluation_ece"):
        assert evaluation.data.metrics[key] == pytest.approx(scores[key], abs=1e-6), key
    kinds = ("offcentre", "rotated", "thick", "thin", "paper", "inverted")
    assert {f"robust_accuracy_{kind}" for kind in kinds} <= evaluation.data.metrics.keys()
    assert Path("reports/ann/reliability.png").stat().st_size > 0


def test_a_failed_evaluation_never_marks_training_failed(
    tuned_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "ann"]) == 0
    record = json.loads(Path("models/ann.json").read_text())
    # given the evaluation split has gone missing
    Path("prepared/test.npz").unlink()
    # when evaluating, then it fails in one line; its own run is FAILED, training stays FINISHED
    assert main(["evaluate", "ann"]) == 2
    assert "prepared/test.npz: not found" in capsys.readouterr().err
    assert [run.info.status for run in evaluation_runs(record["run_id"])] == ["FAILED"]
    assert mlflow.get_run(record["run_id"]).info.status == "FINISHED"


def test_members_train_with_their_own_seeds_and_serve_as_one_averaged_model(
    tuned_project: Path,
) -> None:
    import keras

    from digit_recognizer.models.architectures import ensemble_members
    from digit_recognizer.models.input_pipeline import model_input

    # given the full profile's setting: two CNNs
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"]["cnn"]["members"] = 2
    Path("params.yaml").write_text(yaml.safe_dump(params))
    # when the CNN trains and is evaluated
    assert main(["train", "cnn"]) == 0
    assert main(["evaluate", "cnn"]) == 0
    # then one saved model averages two different networks' probabilities
    model = keras.models.load_model("models/cnn.keras", compile=False)
    members = ensemble_members(model)
    assert [member.name for member in members] == ["cnn_1", "cnn_2"]
    images = model_input(load_split(Path("prepared"), "test").images[:8])
    first, second = (np.asarray(member(images)) for member in members)
    assert not np.allclose(first, second), "members differ by their seed"
    assert np.allclose(np.asarray(model(images)), (first + second) / 2, atol=1e-6)
    # each member's epochs are logged apart, and each member is scored beside the ensemble
    history = pd.read_csv("plots/cnn/history.csv")
    assert set(history["member"]) == {1, 2}
    record = json.loads(Path("models/cnn.json").read_text())
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(record["run_id"], "cnn_2/val_accuracy")]
    scores = json.loads(Path("reports/cnn/scores.json").read_text())
    assert {"cnn_1_evaluation_accuracy", "cnn_2_evaluation_accuracy"} <= scores.keys()
    # and the registered version serves Kaggle rows like any other
    rows = pd.DataFrame(
        load_split(Path("prepared"), "test").images[:3].astype(np.int64),
        columns=list(PIXEL_COLUMNS),
    )
    assert len(mlflow.pyfunc.load_model(record["model_uri"]).predict(rows)) == 3
