"""The baselines stage: KNN, decision tree, random forest and logistic regression (the second
seed's comparison), each searched on validation and scored exactly as ANN and CNN are."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.data.kaggle_csv import pixel_frame
from digit_recognizer.data.splits import load_split, prepared_data_md5
from digit_recognizer.evaluation.model_scores import ModelUnderTest, evaluate_model
from digit_recognizer.evaluation.scores import summary_line
from digit_recognizer.models.classical import BASELINES, fit_best, parameter_count


@dataclass(frozen=True)
class BaselineResult:
    name: str
    settings: dict[str, Any]
    evaluation_accuracy: float  # test.csv when labelled, else the holdout
    evaluation_split: str
    validation_accuracy: float
    fit_seconds: float
    run_id: str


def run_baselines(params: Params, root: Path) -> list[BaselineResult]:
    prepared_dir = Path(params.paths.prepared_dir)
    train, validation = load_split(prepared_dir, "train"), load_split(prepared_dir, "validation")
    assert train.labels is not None and validation.labels is not None
    store = tracking.Store.for_project(params.mlflow, root)
    results = []
    for name in BASELINES:
        tags = tracking.lineage_tags(root, prepared_data_md5(params.paths), "baselines", name)
        with tracking.run(store, f"baseline-{name}", tags) as run_id:
            estimator, settings, validation_accuracy, fit_seconds = fit_best(
                name,
                params.baselines,
                params.seed,
                train.images,
                train.labels,
                validation.images,
                validation.labels,
            )
            scores = evaluate_model(
                ModelUnderTest(
                    name,
                    estimator.predict_proba,
                    parameter_count(estimator),
                    len(pickle.dumps(estimator)),
                    fit_seconds,
                ),
                params,
            )
            tracking.set_tags({"evaluation_split": scores.evaluation.split})
            tracking.describe_run(summary_line(name, scores.metrics, scores.evaluation.split))
            tracking.log_params({"family": name, "seed": params.seed, **settings})
            tracking.log_metrics(scores.metrics)
            tracking.log_artifacts(scores.artifacts, "evaluation")
            tracking.log_sklearn_model(estimator, pixel_frame(validation.images[:5]))
        results.append(
            BaselineResult(
                name,
                settings,
                scores.metrics["evaluation_accuracy"],
                scores.evaluation.split,
                validation_accuracy,
                fit_seconds,
                run_id,
            )
        )
    return results


def main(params: Params) -> None:
    for result in run_baselines(params, tracking.project_root()):
        print(
            f"baselines {result.name}: {result.evaluation_split} accuracy "
            f"{result.evaluation_accuracy:.4f} with {result.settings} "
            f"(fit {result.fit_seconds:.1f}s); MLflow run {result.run_id}"
        )
