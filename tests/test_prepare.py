"""The prepare stage: stratified seeded split, compact arrays, EDA, stats, one MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from digit_recognizer.cli import main
from digit_recognizer.data.eda import EDA_FILES
from digit_recognizer.data.prepare import load_split, split_train_validation
from tests.conftest import synthetic_digits


def test_split_is_stratified_seeded_and_disjoint() -> None:
    table = synthetic_digits(per_class=20, seed=3)
    train, validation = split_train_validation(table, 0.25, seed=7)
    again, _ = split_train_validation(table, 0.25, seed=7)
    assert validation.labels is not None and train.labels is not None
    assert np.bincount(validation.labels).tolist() == [5] * 10, "every digit keeps its share"
    assert np.array_equal(train.images, again.images), "same seed, same split"
    assert len(train) + len(validation) == len(table)


def test_prepare_writes_arrays_stats_plots_and_a_run(project: Path) -> None:
    # when the stage runs on tiny data
    assert main(["prepare"]) == 0
    # then arrays are uint8, stats count rows, and every EDA plot exists
    train = load_split(Path("prepared"), "train")
    assert train.images.dtype == np.uint8 and train.images.shape == (90, 784)
    stats = json.loads(Path("metrics/data.json").read_text())
    assert stats["validation"]["rows"] == 30
    assert stats["train"]["rows_per_class"]["3"] == 9
    assert stats["test_images_also_in_train"] == 0
    for name in EDA_FILES:
        assert (Path("reports/eda") / name).stat().st_size > 1000, name
    # and MLflow holds a finished run with the row counts and the plots
    runs = mlflow.search_runs(
        experiment_names=["digit-recognizer"],
        filter_string="tags.stage = 'prepare'",
        output_format="list",
    )
    latest = runs[0]
    assert latest.info.status == "FINISHED"
    assert latest.data.metrics["rows_test"] == 40
    artifacts = {
        item.path for item in mlflow.MlflowClient().list_artifacts(latest.info.run_id, "eda")
    }
    assert artifacts == {f"eda/{name}" for name in EDA_FILES}


def test_bad_data_fails_in_one_line_and_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a train.csv with a pixel out of range on line 5
    lines = Path("data/train.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",300"
    Path("data/train.csv").write_text("\n".join(lines) + "\n")
    # when prepare runs
    status = main(["prepare"])
    # then it exits non-zero with one line naming file, line and column, and writes nothing
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert error == (
        "digits prepare: error: data/train.csv:5: column 'pixel783': 300 is outside 0-255"
    ), error
    assert not Path("prepared").exists() and not Path("metrics").exists()


def test_missing_data_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("data/test.csv").unlink()
    assert main(["prepare"]) == 2
    assert capsys.readouterr().err.strip() == "digits prepare: error: data/test.csv: file not found"
