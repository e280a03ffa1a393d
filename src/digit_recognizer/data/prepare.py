"""The prepare stage: validate the CSVs, split train.csv (stratified, seeded) into train,
validation and, when test.csv has no labels, a holdout; store uint8 arrays for later stages,
record which data they came from, and describe the data (stats + EDA plots)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import Params
from digit_recognizer.data.dvc_files import directory_md5, tracked_md5
from digit_recognizer.data.kaggle_csv import DIGITS, read_digits_csv
from digit_recognizer.data.splits import (
    DataLineage,
    Splits,
    save_split,
    split_labelled,
    split_path,
    table_digest,
    warn_if_untracked,
    write_lineage,
)
from digit_recognizer.files import write_json


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
        paths.train_csv,
        paths.test_csv,
        params.prepare.validation_fraction,
        params.prepare.holdout_fraction,
        params.seed,
    )
    # Lineage from the bytes read, not from data.dvc, which may describe other data.
    lineage = DataLineage(
        data_md5=directory_md5(Path(paths.data_dir)),
        tracked_md5=tracked_md5(paths.data_dvc) if paths.data_dvc.exists() else None,
        split_digests={name: table_digest(table) for name, table in splits.items()},
    )
    warn_if_untracked(lineage.data_md5, paths.data_dvc)
    statistics = data_statistics(splits)
    prepared_dir = Path(paths.prepared_dir)
    for name, table in splits.items():
        save_split(split_path(prepared_dir, name), table)
    if splits.holdout is None:  # a holdout from earlier, unlabelled test data is stale now
        split_path(prepared_dir, "holdout").unlink(missing_ok=True)
    write_lineage(prepared_dir, lineage)
    statistics_path = paths.data_statistics
    write_json(statistics_path, statistics)
    plots = write_eda(
        splits, params.prepare.eda_samples_per_class, params.seed, Path(paths.reports_dir) / "eda"
    )

    rows = {name: len(table) for name, table in splits.items()}
    store = tracking.Store.for_project(params.mlflow, root)
    with tracking.run(
        store, "prepare", {"stage": "prepare", **tracking.lineage_tags(root, lineage.data_md5)}
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
        tracking.describe_run(
            " / ".join(f"{count:,} {name}" for name, count in rows.items())
            + f" rows; test.csv {'labelled' if splits.test.labels is not None else 'unlabelled'}"
        )
        tracking.log_artifacts(plots, "eda")
    return PrepareResult(rows=rows, statistics_path=statistics_path, plots=plots, run_id=run_id)
