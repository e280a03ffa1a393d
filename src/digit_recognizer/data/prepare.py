"""What the prepare stage does to the data: both CSVs validated, train.csv split (stratified,
seeded) into train, validation and, when test.csv has no labels, a holdout; and the data
described (rows, classes, duplicates, images shared between train and test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.data.kaggle_csv import DIGITS, read_digits_csv
from digit_recognizer.data.splits import (
    Splits,
    split_labelled,
)


def read_and_split(
    train_csv: Path,
    test_csv: Path,
    validation_fraction: float,
    holdout_fraction: float,
    seed: int,
) -> Splits:
    """Both CSVs validated; a holdout is carved from train.csv only if test.csv is unlabelled."""
    train_table = read_digits_csv(train_csv, require_labels=True)
    test_table = read_digits_csv(test_csv, require_labels=False)
    train, validation, holdout = split_labelled(
        train_table,
        validation_fraction,
        None if test_table.labels is not None else holdout_fraction,
        seed,
    )
    return Splits(train=train, validation=validation, test=test_table, holdout=holdout)


def _duplicate_count(images: npt.NDArray[np.uint8]) -> int:
    rows = np.ascontiguousarray(images).view(np.dtype((np.void, images.shape[1])))
    return int(len(rows) - len(np.unique(rows)))


def _shared_count(first: npt.NDArray[np.uint8], second: npt.NDArray[np.uint8]) -> int:
    void = np.dtype((np.void, first.shape[1]))
    return int(
        np.isin(
            np.ascontiguousarray(second).view(void).ravel(),
            np.ascontiguousarray(first).view(void).ravel(),
        ).sum()
    )


def data_statistics(splits: Splits) -> dict[str, object]:
    """Rows per class, duplicate and empty images per split, and test images also in train."""
    statistics: dict[str, object] = {}
    for name, table in splits.items():
        per_class = (
            {str(digit): int((table.labels == digit).sum()) for digit in DIGITS}
            if table.labels is not None
            else None
        )
        statistics[name] = {
            "rows": len(table),
            "rows_per_class": per_class,
            "duplicate_images": _duplicate_count(table.images),
            "empty_images": int((table.images.max(axis=1) == 0).sum()),
        }
    train_images = np.concatenate([splits.train.images, splits.validation.images])
    statistics["test_images_also_in_train"] = _shared_count(train_images, splits.test.images)
    return statistics
