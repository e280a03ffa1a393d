"""The prepare stage: validate the CSVs, split train/validation (stratified, seeded), store uint8
arrays for later stages, and describe the data (stats + EDA plots)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import Params
from digit_recognizer.data.kaggle_csv import DIGITS, DigitTable, read_digits_csv
from digit_recognizer.errors import UserError
from digit_recognizer.files import atomic_path, write_json

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    train: DigitTable
    validation: DigitTable
    test: DigitTable

    def items(self) -> list[tuple[str, DigitTable]]:
        return [(name, getattr(self, name)) for name in SPLITS]


def split_train_validation(
    table: DigitTable, validation_fraction: float, seed: int
) -> tuple[DigitTable, DigitTable]:
    """Stratified split so every digit keeps its share in both parts."""
    from sklearn.model_selection import train_test_split

    assert table.labels is not None, "train.csv always has labels"
    indices = np.arange(len(table))
    try:
        train_index, validation_index = train_test_split(
            indices, test_size=validation_fraction, random_state=seed, stratify=table.labels
        )
    except ValueError as error:  # too few rows of a digit to stratify
        raise UserError(
            f"train.csv: cannot split with prepare.validation_fraction: {error}"
        ) from None
    train_index.sort()
    validation_index.sort()
    return (
        DigitTable(table.images[train_index], table.labels[train_index]),
        DigitTable(table.images[validation_index], table.labels[validation_index]),
    )


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


def read_and_split(
    train_csv: Path, test_csv: Path, validation_fraction: float, seed: int
) -> Splits:
    train_table = read_digits_csv(train_csv, require_labels=True)
    test_table = read_digits_csv(test_csv, require_labels=False)
    train, validation = split_train_validation(train_table, validation_fraction, seed)
    return Splits(train=train, validation=validation, test=test_table)


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


@dataclass(frozen=True)
class PrepareResult:
    rows: dict[str, int]
    statistics_path: Path
    plots: list[Path]
    run_id: str


def run_prepare(params: Params, root: Path) -> PrepareResult:
    """The prepare stage: every output is written only after both CSVs validated."""
    from digit_recognizer import tracking
    from digit_recognizer.data.eda import write_eda

    paths = params.paths
    splits = read_and_split(
        paths.train_csv, paths.test_csv, params.prepare.validation_fraction, params.seed
    )
    statistics = data_statistics(splits)
    prepared_dir = Path(paths.prepared_dir)
    for name, table in splits.items():
        save_split(split_path(prepared_dir, name), table)
    statistics_path = Path(paths.metrics_dir) / "data.json"
    write_json(statistics_path, statistics)
    plots = write_eda(
        splits, params.prepare.eda_samples_per_class, params.seed, Path(paths.reports_dir) / "eda"
    )

    rows = {name: len(table) for name, table in splits.items()}
    store = tracking.Store.for_project(params.mlflow, root)
    with tracking.run(
        store, "prepare", {"stage": "prepare", **tracking.lineage_tags(root, paths.data_dvc)}
    ) as run_id:
        tracking.log_params(
            {
                "seed": params.seed,
                **params.prepare.model_dump(),
                "test_has_labels": splits.test.labels is not None,
            }
        )
        tracking.log_metrics({f"rows_{name}": count for name, count in rows.items()})
        tracking.log_metrics(
            {
                "test_images_also_in_train": float(statistics["test_images_also_in_train"]),  # type: ignore[arg-type]
            }
        )
        tracking.log_dict(statistics, "data_stats.json")
        tracking.log_artifacts(plots, "eda")
    return PrepareResult(rows=rows, statistics_path=statistics_path, plots=plots, run_id=run_id)
