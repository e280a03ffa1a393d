"""The baselines stage: KNN, decision tree, random forest and logistic regression.

Each baseline searches its small grid on the validation split, is scored by the same
evaluation code as the ANN and CNN (same metric names), and becomes one MLflow run with its
scikit-learn model logged (with a signature).
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.data.kaggle_csv import pixel_frame
from digit_recognizer.data.splits import load_split, prepared_data_md5
from digit_recognizer.evaluation import ModelUnderTest, evaluate_model, summary_line
from digit_recognizer.models.classical import BASELINES, build_baseline, candidate_settings
from digit_recognizer.models.threads import threads_in_use


@dataclass(frozen=True)
class BaselineResult:
    name: str
    settings: dict[str, Any]
    test_accuracy: float  # on the evaluation split (test.csv when labelled, else the holdout)
    evaluation_split: str
    validation_accuracy: float
    fit_seconds: float
    run_id: str


def fit_best(
    name: str,
    params: Params,
    train_images: npt.NDArray[np.uint8],
    train_labels: npt.NDArray[np.uint8],
    validation_images: npt.NDArray[np.uint8],
    validation_labels: npt.NDArray[np.uint8],
) -> tuple[Any, dict[str, Any], float, float]:
    """Fit every grid candidate on train; keep the best on validation (model, settings,
    validation accuracy, fit seconds of the kept model)."""
    best: tuple[Any, dict[str, Any], float, float] | None = None
    for settings in candidate_settings(name, params.baselines):
        estimator = build_baseline(name, settings, threads_in_use(), params.seed)
        started = time.monotonic()
        estimator.fit(train_images, train_labels)
        fit_seconds = time.monotonic() - started
        accuracy = float((estimator.predict(validation_images) == validation_labels).mean())
        print(
            f"baselines {name}: {settings} validation accuracy {accuracy:.4f} "
            f"(fit {fit_seconds:.1f}s)",
            flush=True,
        )
        if best is None or accuracy > best[2]:
            best = (estimator, settings, accuracy, fit_seconds)
    assert best is not None, "candidate_settings always yields at least one candidate"
    return best


def parameter_count(estimator: Any) -> int:
    """Stored numbers that define the fitted model (what a neural network calls parameters)."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "coef_"):
        return int(final.coef_.size + final.intercept_.size)
    if hasattr(final, "tree_"):
        return int(final.tree_.node_count * 3)
    if hasattr(final, "estimators_"):
        return int(sum(tree.tree_.node_count * 3 for tree in final.estimators_))
    if hasattr(final, "_fit_X"):  # KNN keeps its (projected) training set
        pca = estimator.steps[-2][1]
        return int(final._fit_X.size + pca.components_.size)
    return 0


def run_baselines(params: Params, root: Path) -> list[BaselineResult]:
    prepared_dir = Path(params.paths.prepared_dir)
    train, validation = load_split(prepared_dir, "train"), load_split(prepared_dir, "validation")
    assert train.labels is not None and validation.labels is not None
    store = tracking.Store.for_project(params.mlflow, root)
    results = []
    for name in BASELINES:
        tags = {
            "stage": "baselines",
            "family": name,
            **tracking.lineage_tags(root, prepared_data_md5(params.paths)),
        }
        with tracking.run(store, f"baseline-{name}", tags) as run_id:
            estimator, settings, validation_accuracy, fit_seconds = fit_best(
                name, params, train.images, train.labels, validation.images, validation.labels
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
                scores.metrics["test_accuracy"],
                scores.evaluation.split,
                validation_accuracy,
                fit_seconds,
                run_id,
            )
        )
    return results
