"""The prepared splits: how train.csv is divided, how the arrays are stored and found again,
and which labelled split the final scores come from.

``train`` fits, ``validation`` drives early stopping, search and model choice. The final scores
come from the *evaluation split*: ``test`` when data/test.csv has labels (the default MNIST
source), otherwise ``holdout``, a labelled share of train.csv that no stage fits on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import PathsConfig
from digit_recognizer.data.dvc_files import tracked_md5
from digit_recognizer.data.kaggle_csv import DigitTable
from digit_recognizer.errors import UserError
from digit_recognizer.files import atomic_path, write_json

SPLITS = ("train", "validation", "test", "holdout")
EvaluationSplit = Literal["test", "holdout"]
LINEAGE_FILE = "lineage.json"


@dataclass(frozen=True)
class Splits:
    train: DigitTable
    validation: DigitTable
    test: DigitTable
    holdout: DigitTable | None = None  # only when test.csv has no labels

    def items(self) -> list[tuple[str, DigitTable]]:
        tables = {name: getattr(self, name) for name in SPLITS}
        return [(name, table) for name, table in tables.items() if table is not None]


def stratified_split(
    table: DigitTable, fraction: float, seed: int, key: str
) -> tuple[DigitTable, DigitTable]:
    """(rest, share): every digit keeps its proportion in both parts; rows keep their order."""
    from sklearn.model_selection import train_test_split

    assert table.labels is not None, "only labelled tables are split"
    indices = np.arange(len(table))
    try:
        rest_index, share_index = train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=table.labels
        )
    except ValueError as error:  # too few rows of a digit to stratify
        raise UserError(f"train.csv: cannot split with {key}: {error}") from None
    rest_index.sort()
    share_index.sort()
    return (
        DigitTable(table.images[rest_index], table.labels[rest_index]),
        DigitTable(table.images[share_index], table.labels[share_index]),
    )


def split_labelled(
    table: DigitTable, validation_fraction: float, holdout_fraction: float | None, seed: int
) -> tuple[DigitTable, DigitTable, DigitTable | None]:
    """(train, validation, holdout): both fractions are shares of the whole of train.csv."""
    holdout = None
    if holdout_fraction is not None:
        if validation_fraction + holdout_fraction >= 1.0:
            raise UserError(
                "params.yaml: prepare.validation_fraction + prepare.holdout_fraction must be "
                "below 1"
            )
        table, holdout = stratified_split(table, holdout_fraction, seed, "prepare.holdout_fraction")
        validation_fraction = validation_fraction / (1.0 - holdout_fraction)
    train, validation = stratified_split(
        table, validation_fraction, seed, "prepare.validation_fraction"
    )
    return train, validation, holdout


def split_path(prepared_dir: Path, split: str) -> Path:
    return prepared_dir / f"{split}.npz"


def save_split(path: Path, table: DigitTable) -> None:
    arrays: dict[str, npt.NDArray[np.uint8]] = {"images": table.images}
    if table.labels is not None:
        arrays["labels"] = table.labels
    with atomic_path(path) as temporary, temporary.open("wb") as stream:
        # Uncompressed: later stages load it in milliseconds.
        np.savez(stream, **arrays)  # type: ignore[arg-type]


def load_split(prepared_dir: Path, split: str) -> DigitTable:
    path = split_path(prepared_dir, split)
    if not path.exists():
        raise UserError(f"{path}: not found; run the prepare stage first (dvc repro prepare)")
    with np.load(path) as arrays:
        labels = arrays["labels"] if "labels" in arrays.files else None
        return DigitTable(images=arrays["images"], labels=labels)


def evaluation_split(prepared_dir: Path) -> tuple[EvaluationSplit, DigitTable]:
    """The labelled split final scores come from: test when labelled, else the holdout."""
    test = load_split(prepared_dir, "test")
    if test.labels is not None:
        return "test", test
    return "holdout", load_split(prepared_dir, "holdout")


@dataclass(frozen=True)
class SplitPredictions:
    """A model's predicted digit for every image of one labelled split (the evaluation split,
    or the robustness set), and which split."""

    split: str
    digest: str  # table_digest of the split: the same images, or not
    predicted: npt.NDArray[np.int64]

    def as_json(self) -> dict[str, object]:
        return {"split": self.split, "digest": self.digest, "predicted": self.predicted.tolist()}

    @classmethod
    def from_json(cls, content: dict[str, Any]) -> SplitPredictions:
        return cls(content["split"], content["digest"], np.asarray(content["predicted"]))


def table_digest(table: DigitTable) -> str:
    """A digest of the images and labels themselves (npz bytes carry a timestamp)."""
    digest = hashlib.sha256(np.ascontiguousarray(table.images).tobytes())
    if table.labels is not None:
        digest.update(np.ascontiguousarray(table.labels).tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class DataLineage:
    """What the prepared arrays were made from: the DVC hash of data/ as it was read."""

    data_md5: str
    tracked_md5: str | None  # what data.dvc said at that time
    split_digests: dict[str, str]


def write_lineage(prepared_dir: Path, lineage: DataLineage) -> None:
    write_json(
        prepared_dir / LINEAGE_FILE,
        {
            "data_md5": lineage.data_md5,
            "tracked_md5": lineage.tracked_md5,
            "split_digests": lineage.split_digests,
        },
    )


def read_lineage(paths: PathsConfig) -> DataLineage | None:
    """The prepared data's lineage, warning in one line when data.dvc now says otherwise."""
    path = Path(paths.prepared_dir) / LINEAGE_FILE
    if not path.exists():
        return None
    recorded = json.loads(path.read_text(encoding="utf-8"))
    lineage = DataLineage(
        recorded["data_md5"], recorded.get("tracked_md5"), recorded["split_digests"]
    )
    warn_if_untracked(lineage.data_md5, paths.data_dvc)
    return lineage


def prepared_data_md5(paths: PathsConfig) -> str | None:
    """The DVC hash of the data the prepared arrays came from (None before prepare ran)."""
    lineage = read_lineage(paths)
    return lineage.data_md5 if lineage else None


def warn_if_untracked(data_md5: str, data_dvc: Path) -> None:
    """One line when the data in use is not what data.dvc records (runs say which was used)."""
    tracked = tracked_md5(data_dvc) if data_dvc.exists() else None
    if tracked != data_md5:
        print(
            f"digits: warning: the data in use (md5 {data_md5}) is not what {data_dvc} records "
            f"({tracked or 'no such file'}); run 'dvc add {data_dvc.stem}' to track it",
            file=sys.stderr,
        )
