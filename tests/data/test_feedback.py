"""People's corrections as data: the exported CSV read (none is fine, a bad one is one line),
split by a seeded hash of each picture (stable as corrections grow), mixed into training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.cli import main
from digit_recognizer.data.feedback import in_evaluation, mixed_in, read_feedback, split_feedback
from digit_recognizer.data.kaggle_csv import DigitTable, write_digits_csv
from digit_recognizer.data.splits import load_split
from digit_recognizer.errors import UserError
from tests.helpers.project import synthetic_digits


def test_an_empty_export_reads_as_no_corrections(tmp_path: Path) -> None:
    path = tmp_path / "feedback.csv"
    write_digits_csv(path, DigitTable(np.zeros((0, 784), np.uint8), np.zeros(0, np.uint8)))
    table = read_feedback(path)
    assert table.images.shape == (0, 784) and table.labels is not None and not len(table.labels)


def test_a_bad_feedback_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "feedback.csv"
    write_digits_csv(path, synthetic_digits(2, seed=0, with_labels=False))
    with pytest.raises(UserError, match=r"feedback.csv:1: header must start with 'label'"):
        read_feedback(path)


def test_the_split_is_seeded_by_picture_and_stable_as_corrections_grow() -> None:
    # given 1,000 corrected pictures, and 500 more later
    first = synthetic_digits(100, seed=1)
    more = synthetic_digits(50, seed=2)
    assert first.labels is not None and more.labels is not None
    grown = DigitTable(
        np.concatenate([more.images, first.images]), np.concatenate([more.labels, first.labels])
    )
    # when split with the same seed
    before = in_evaluation(first.images, 0.3, seed=42)
    after = in_evaluation(grown.images, 0.3, seed=42)
    # then no earlier picture changed its part, and about 30 % are held for evaluation
    assert np.array_equal(after[len(more) :], before)
    assert 0.25 < before.mean() < 0.35
    # and another seed draws another split; the same picture twice lands in one part
    assert not np.array_equal(in_evaluation(first.images, 0.3, seed=43), before)
    twice = np.concatenate([first.images[:1], first.images[:1]])
    assert len(set(in_evaluation(twice, 0.5, seed=0).tolist())) == 1
    parts = split_feedback(first, 0.3, seed=42)
    assert len(parts.train) + len(parts.evaluation) == len(first)


def test_feedback_is_mixed_in_as_many_times_as_its_weight() -> None:
    train = synthetic_digits(10, seed=3)
    feedback = synthetic_digits(20, seed=4)
    mixed = mixed_in(train, feedback, 2.5, seed=0)
    assert mixed.labels is not None
    added = len(mixed) - len(train)
    assert 2 * len(feedback) < added < 3 * len(feedback)
    assert np.array_equal(mixed.images[: len(train)], train.images)
    assert mixed_in(train, feedback, 0.0, seed=0) is train


def test_the_feedback_stage_splits_the_export(project: Path) -> None:
    # given an export of 200 corrected digits
    write_digits_csv(project / "feedback" / "feedback.csv", synthetic_digits(20, seed=5))
    # when the stage runs
    assert main(["split-feedback"]) == 0
    # then feedback-train and feedback-eval hold them all, about 30 % in eval
    train = load_split(project / "prepared_feedback", "feedback_train")
    evaluation = load_split(project / "prepared_feedback", "feedback_eval")
    assert len(train) + len(evaluation) == 200
    assert 30 < len(evaluation) < 90
