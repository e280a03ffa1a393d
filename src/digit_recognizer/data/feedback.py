"""People's corrections as training and evaluation data: ``feedback/feedback.csv`` (Kaggle's
train layout, written by ``digits feedback export``) split into a feedback-train part, mixed
into training, and a feedback-eval part that only scores and gates: nothing fits, stops early
or chooses on it.

Each picture's part is fixed by a seeded hash of its pixels, not by its position: more
corrections later never move an earlier one from eval to train, and the same picture
corrected twice lands in one part only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.data.kaggle_csv import DigitTable, read_digits_csv

FEEDBACK_TRAIN, FEEDBACK_EVALUATION = "feedback_train", "feedback_eval"
FEEDBACK_SPLITS = (FEEDBACK_TRAIN, FEEDBACK_EVALUATION)


@dataclass(frozen=True)
class FeedbackSplits:
    train: DigitTable
    evaluation: DigitTable

    def items(self) -> list[tuple[str, DigitTable]]:
        return list(zip(FEEDBACK_SPLITS, (self.train, self.evaluation), strict=True))


def read_feedback(path: Path) -> DigitTable:
    """The exported corrections; none (an empty table) when the file holds no rows."""
    return read_digits_csv(path, require_labels=True, partial=True)


def in_evaluation(
    images: npt.NDArray[np.uint8], fraction: float, seed: int
) -> npt.NDArray[np.bool_]:
    """Which pictures belong to feedback-eval: a seeded hash of each picture's pixels."""
    salt = seed.to_bytes(8, "little", signed=True)
    shares = [
        int.from_bytes(hashlib.sha256(salt + row.tobytes()).digest()[:8], "little") / 2**64
        for row in images
    ]
    return np.asarray(shares, dtype=np.float64) < fraction


def split_feedback(table: DigitTable, fraction: float, seed: int) -> FeedbackSplits:
    assert table.labels is not None, "feedback is labelled"
    evaluation = in_evaluation(table.images, fraction, seed)
    return FeedbackSplits(
        train=DigitTable(table.images[~evaluation], table.labels[~evaluation]),
        evaluation=DigitTable(table.images[evaluation], table.labels[evaluation]),
    )


def mixed_in(train: DigitTable, feedback: DigitTable, weight: float, seed: int) -> DigitTable:
    """The train split with each feedback picture ``weight`` times (a fractional part by a
    seeded draw): people's digits count as much as ``weight`` MNIST digits each."""
    assert train.labels is not None and feedback.labels is not None
    if not len(feedback) or weight == 0:
        return train
    whole, fraction = divmod(weight, 1.0)
    extra = np.random.default_rng(seed).random(len(feedback)) < fraction
    copies = np.full(len(feedback), int(whole)) + extra
    index = np.repeat(np.arange(len(feedback)), copies)
    return DigitTable(
        np.concatenate([train.images, feedback.images[index]]),
        np.concatenate([train.labels, feedback.labels[index]]),
    )
