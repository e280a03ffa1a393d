"""The feedback stage: people's corrections (``feedback/feedback.csv``, written by
``digits feedback export``) split into feedback-train, which training mixes in, and
feedback-eval, which only scores and gates.

A stage of its own, apart from prepare: new corrections rerun training, scoring and
promotion, not the search or the robustness set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.data.dvc_files import directory_md5
from digit_recognizer.data.feedback import read_feedback, split_feedback
from digit_recognizer.data.kaggle_csv import PIXEL_COUNT, DigitTable
from digit_recognizer.data.splits import save_split, split_path


@dataclass(frozen=True)
class FeedbackResult:
    rows: dict[str, int]
    run_id: str


def run_feedback(params: Params, root: Path) -> FeedbackResult:
    paths = params.paths
    source = paths.feedback_csv
    table = (
        read_feedback(source)
        if source.exists()
        else DigitTable(np.zeros((0, PIXEL_COUNT), np.uint8), np.zeros(0, np.uint8))
    )
    splits = split_feedback(table, params.feedback.eval_fraction, params.seed)
    for name, part in splits.items():
        save_split(split_path(Path(paths.prepared_feedback_dir), name), part)
    rows = {name: len(part) for name, part in splits.items()}
    feedback_md5 = directory_md5(Path(paths.feedback_dir)) if source.exists() else None
    store = tracking.Store.for_project(params.mlflow, root)
    with tracking.run(
        store, "feedback", tracking.lineage_tags(root, feedback_md5, "feedback")
    ) as run_id:
        tracking.log_params({"seed": params.seed, "eval_fraction": params.feedback.eval_fraction})
        tracking.log_metrics({f"rows_{name}": count for name, count in rows.items()})
        tracking.describe_run(
            " / ".join(f"{count:,} {name}" for name, count in rows.items()) + " corrected digits"
        )
    return FeedbackResult(rows, run_id)


def main(params: Params) -> None:
    result = run_feedback(params, tracking.project_root())
    counts = ", ".join(f"{name} {count}" for name, count in result.rows.items())
    print(f"feedback: {counts} rows of people's corrections; MLflow run {result.run_id}")
