"""The report stage: every model (ANN, CNN, the baselines) compared from its scores.json, in
summary.md, comparison.csv and comparison.png."""

from __future__ import annotations

from pathlib import Path

from digit_recognizer.config import FAMILIES, Params
from digit_recognizer.errors import UserError
from digit_recognizer.evaluation.comparison import write_report
from digit_recognizer.models.classical import BASELINES


def main(params: Params) -> None:
    scores_files = {name: params.paths.all_scores(name) for name in (*FAMILIES, *BASELINES)}
    missing = [path for path in scores_files.values() if not path.exists()]
    if missing:
        raise UserError(f"{missing[0]}: not found; run the evaluate and baselines stages first")
    paths = write_report(scores_files, Path(params.paths.reports_dir))
    print(f"report: wrote {', '.join(str(path) for path in paths)}")
