"""The prepare stage: validate the CSVs, split train.csv into train, validation and (when
test.csv has no labels) a holdout; store uint8 arrays for later stages, record which data they
came from, and describe the data (stats + EDA plots). Every output is written only after both
CSVs validated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.data.dvc_files import directory_md5, tracked_md5
from digit_recognizer.data.eda import write_eda
from digit_recognizer.data.prepare import data_statistics, read_and_split
from digit_recognizer.data.sources import check_not_half_replaced
from digit_recognizer.data.splits import (
    DataLineage,
    save_split,
    split_path,
    table_digest,
    warn_if_untracked,
    write_lineage,
)
from digit_recognizer.files import write_json


@dataclass(frozen=True)
class PrepareResult:
    rows: dict[str, int]
    statistics_path: Path
    plots: list[Path]
    run_id: str


def run_prepare(params: Params, root: Path) -> PrepareResult:
    """The prepare stage: every output is written only after both CSVs validated."""
    paths = params.paths
    check_not_half_replaced(Path(paths.data_dir))
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
    plots = write_eda(splits, params.prepare.eda_samples_per_class, params.seed, paths.eda_dir)

    rows = {name: len(table) for name, table in splits.items()}
    store = tracking.Store.for_project(params.mlflow, root)
    with tracking.run(
        store, "prepare", tracking.lineage_tags(root, lineage.data_md5, "prepare")
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


def main(params: Params) -> None:
    result = run_prepare(params, tracking.project_root())
    counts = ", ".join(f"{name} {count}" for name, count in result.rows.items())
    print(f"prepare: {counts} rows; stats in {result.statistics_path}; MLflow run {result.run_id}")
