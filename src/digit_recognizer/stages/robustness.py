"""The robustness stage: the evaluation split's digits as pictures people hand over, read back
through the project's picture reader; every model is scored on the rows it made.

A stage of its own, apart from prepare: a change to the picture reader or to the set reruns
the scoring stages, not training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.data.robustness import (
    KINDS,
    build_robustness_set,
    plot_examples,
    save_robustness_set,
)
from digit_recognizer.data.splits import evaluation_split, prepared_data_md5


@dataclass(frozen=True)
class RobustnessResult:
    evaluation_split: str
    pictures: int
    set_path: Path
    examples_path: Path
    run_id: str


def run_robustness(params: Params, root: Path) -> RobustnessResult:
    paths = params.paths
    split, source = evaluation_split(Path(paths.prepared_dir))
    robustness = build_robustness_set(source, params.robustness.images_per_kind, params.seed)
    save_robustness_set(paths.robustness_set, robustness)
    plot_examples(source, params.seed, paths.robustness_examples)
    store = tracking.Store.for_project(params.mlflow, root)
    tags = tracking.lineage_tags(root, prepared_data_md5(paths), "robustness")
    with tracking.run(store, "robustness", tags) as run_id:
        tracking.log_params(
            {"seed": params.seed, "evaluation_split": split, "kinds": ",".join(KINDS)}
            | params.robustness.model_dump()
        )
        tracking.describe_run(
            f"{len(robustness.kinds):,} pictures from the {split} split, "
            f"{params.robustness.images_per_kind:,} of each kind: {', '.join(KINDS)}"
        )
        tracking.log_artifacts([paths.robustness_examples], "robustness")
    return RobustnessResult(
        split, len(robustness.kinds), paths.robustness_set, paths.robustness_examples, run_id
    )


def main(params: Params) -> None:
    result = run_robustness(params, tracking.project_root())
    print(
        f"robustness: {result.pictures} pictures from the {result.evaluation_split} split read "
        f"back into {result.set_path}; examples in {result.examples_path}; MLflow run "
        f"{result.run_id}"
    )
