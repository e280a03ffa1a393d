"""The prepare stage: stratified seeded split, compact arrays, EDA, stats, one MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from digit_recognizer.cli import main
from digit_recognizer.data.dvc_files import directory_md5
from digit_recognizer.data.eda import EDA_FILES
from digit_recognizer.data.kaggle_csv import write_digits_csv
from digit_recognizer.data.splits import evaluation_split, load_split, split_labelled
from tests.helpers.project import synthetic_digits


def image_set(images: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in images}


def test_split_is_stratified_seeded_and_disjoint() -> None:
    # given 200 distinct labelled images
    table = synthetic_digits(per_class=20, seed=3)
    assert len(image_set(table.images)) == len(table)
    # when split into train, validation and holdout (each a share of the whole)
    train, validation, holdout = split_labelled(table, 0.2, 0.1, seed=7)
    again, _, _ = split_labelled(table, 0.2, 0.1, seed=7)
    # then every digit keeps its share, the same seed gives the same split ...
    assert validation.labels is not None and holdout is not None and holdout.labels is not None
    assert np.bincount(validation.labels).tolist() == [4] * 10, "every digit keeps its share"
    assert np.bincount(holdout.labels).tolist() == [2] * 10
    assert np.array_equal(train.images, again.images), "same seed, same split"
    # ... and no image is in two splits, while together they are the whole file
    parts = [image_set(part.images) for part in (train, validation, holdout)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == image_set(table.images)


def test_unlabelled_test_csv_gets_a_holdout_that_scores_in_its_place(project: Path) -> None:
    # given Kaggle-shaped data: a labelled train.csv and a test.csv without labels
    write_digits_csv(Path("data/test.csv"), synthetic_digits(4, 9, with_labels=False))
    # when prepare runs
    assert main(["prepare"]) == 0
    # then a labelled holdout exists, shares no image with train or validation, and is the
    # split final scores come from
    prepared = Path("prepared")
    holdout = load_split(prepared, "holdout")
    assert holdout.labels is not None and len(holdout) == 12  # 10 % of 120 rows
    fitted = image_set(load_split(prepared, "train").images) | image_set(
        load_split(prepared, "validation").images
    )
    assert not image_set(holdout.images) & fitted, "the holdout must never be fitted on"
    assert evaluation_split(prepared)[0] == "holdout"
    assert load_split(prepared, "test").labels is None


def test_labelled_test_csv_needs_no_holdout(project: Path) -> None:
    assert main(["prepare"]) == 0
    assert not Path("prepared/holdout.npz").exists()
    assert evaluation_split(Path("prepared"))[0] == "test"


def test_runs_record_the_data_actually_read_and_say_when_dvc_disagrees(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a data.dvc that records other data than data/ holds (fetch-data without dvc add)
    Path("data.dvc").write_text(
        "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data\n"
    )
    # when prepare runs
    assert main(["prepare"]) == 0
    # then it says so in one line, and the run carries the hash of the bytes it read
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "data.dvc" in warnings[0], warnings
    run = mlflow.search_runs(
        experiment_names=["digit-recognizer"],
        filter_string="tags.stage = 'prepare'",
        output_format="list",
    )[0]
    assert run.data.tags["data_md5"] == directory_md5(Path("data"))


def test_prepare_writes_arrays_stats_plots_and_a_run(project: Path) -> None:
    # when the stage runs on tiny data
    assert main(["prepare"]) == 0
    # then arrays are uint8, stats count rows, and every EDA plot exists
    train = load_split(Path("prepared"), "train")
    assert train.images.dtype == np.uint8 and train.images.shape == (90, 784)
    stats = json.loads(Path("reports/eda/statistics.json").read_text())
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
