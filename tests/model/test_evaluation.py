"""Evaluation and the logged model: honest scores, Kaggle formats, clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS, write_submission
from digit_recognizer.evaluation.scores import confusion_rows, evaluation_score, score
from digit_recognizer.models.architectures import AnnHyperparameters, build_model
from digit_recognizer.models.pyfunc import compiled_probabilities, pixels_from, predict_frame
from tests.helpers.project import synthetic_digits


def test_scores_of_a_perfect_and_a_wrong_prediction() -> None:
    labels = np.arange(10, dtype=np.uint8)
    perfect = np.eye(10)
    metrics = score(labels, perfect, "evaluation")
    assert metrics["evaluation_accuracy"] == 1.0 and metrics["evaluation_macro_f1"] == 1.0
    assert metrics["evaluation_log_loss"] < 1e-5
    shifted = np.roll(np.eye(10), 1, axis=1)
    worse = score(labels, shifted, "evaluation")
    assert worse["evaluation_accuracy"] == 0.0 and worse["evaluation_recall_3"] == 0.0


def test_scores_are_read_by_the_new_name_or_by_the_one_older_versions_carry() -> None:
    assert (
        evaluation_score({"evaluation_accuracy": "0.99", "test_accuracy": "0.5"}, "accuracy")
        == "0.99"
    )
    assert evaluation_score({"test_macro_f1": "0.98"}, "macro_f1") == "0.98"
    assert evaluation_score({"validation_accuracy": "0.9"}, "accuracy") is None


def test_submission_and_confusion_formats(tmp_path: Path) -> None:
    write_submission(np.array([7, 2, 1]), tmp_path / "submission.csv")
    assert (tmp_path / "submission.csv").read_text() == "ImageId,Label\n1,7\n2,2\n3,1\n"
    assert (
        confusion_rows(np.array([1, 2], np.uint8), np.array([1, 3]))
        == "actual,predicted\n1,1\n2,3\n"
    )


def test_the_compiled_path_gives_the_models_own_probabilities() -> None:
    model = build_model(AnnHyperparameters(units=8, hidden_layers=1))
    pixels = synthetic_digits(60, 0).images  # 600 rows: more than one chunk
    expected = model.predict(pixels.reshape(-1, 28, 28, 1).astype(np.float32), verbose=0)
    assert np.allclose(compiled_probabilities(model)(pixels), expected, atol=1e-6)


def test_predictions_are_labels_plus_probabilities() -> None:
    model = build_model(AnnHyperparameters(units=8, hidden_layers=1))
    frame = predict_frame(compiled_probabilities(model), synthetic_digits(1, 0).images)
    assert list(frame.columns) == ["label"] + [f"prob_{digit}" for digit in range(10)]
    assert (frame["label"] == frame.iloc[:, 1:].to_numpy().argmax(axis=1)).all()


def test_a_shifted_digit_keeps_its_label_for_a_trained_cnn() -> None:
    from digit_recognizer.models.architectures import CnnHyperparameters
    from digit_recognizer.models.input_pipeline import model_input

    data = synthetic_digits(per_class=20, seed=4)
    assert data.labels is not None
    model = build_model(CnnHyperparameters(filters=8, dense_units=32))
    model.fit(model_input(data.images), data.labels, epochs=8, verbose=0)
    images = data.images[:40].reshape(-1, 28, 28)
    shifted = np.roll(images, 1, axis=2).reshape(-1, 784)  # one pixel to the right
    probabilities = compiled_probabilities(model)
    original = predict_frame(probabilities, data.images[:40])["label"].to_numpy()
    moved = predict_frame(probabilities, shifted)["label"].to_numpy()
    assert (original == data.labels[:40]).mean() > 0.9
    assert (moved == original).mean() >= 0.9


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.zeros((2, 783)), "expected rows of 784 pixels"),
        (np.full((1, 784), 256), "within 0-255"),
        (np.full((1, 784), 0.5), "integers 0-255"),
        (np.full((1, 784), "a"), "non-numeric"),
        (np.zeros((0, 784)), "no rows"),
        (pd.DataFrame({"pixel0": [1]}), "missing"),
    ],
)
def test_bad_rows_are_refused_with_the_reason(rows: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pixels_from(rows)


def test_kaggle_frame_with_extra_label_column_is_accepted() -> None:
    frame = pd.DataFrame(np.ones((2, 784), dtype=np.int64), columns=list(PIXEL_COLUMNS))
    frame.insert(0, "label", [1, 2])
    assert pixels_from(frame).shape == (2, 784)
