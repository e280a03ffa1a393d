"""The registry's side of a promotion decision: which versions are candidates, and each
version scored on the evaluation split, the robustness set and feedback-eval (from the
predictions its evaluation logged when they are for the same images, else predicted again);
and the champion's submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer import tracking
from digit_recognizer.config import FAMILIES, Params
from digit_recognizer.data.kaggle_csv import DIGITS, DigitTable, write_submission
from digit_recognizer.data.robustness import RobustnessSet, robust_accuracies
from digit_recognizer.data.splits import (
    EvaluationSplit,
    SplitPredictions,
    load_split,
    table_digest,
)
from digit_recognizer.errors import UserError
from digit_recognizer.models.record import load_trained
from digit_recognizer.promotion.policy import VersionScores


def logged_or_predicted(
    params: Params,
    registry: tracking.Registry,
    record: tracking.VersionRecord,
    table: DigitTable,
    artifact: str,
) -> tuple[npt.NDArray[np.int64], bool]:
    """A version's predictions for ``table``: those its evaluation logged when they are for
    these very images; otherwise predicted again through the registered model (rescored)."""
    evaluation_run = record.tags.get("evaluation_run_id")
    logged = (
        tracking.load_run_dict(evaluation_run, artifact, registry.store) if evaluation_run else None
    )
    predictions = SplitPredictions.from_json(logged) if logged else None
    if predictions is not None and predictions.digest == table_digest(table):
        return predictions.predicted, False
    # none logged, or logged for other images (an earlier test file, holdout or robustness set)
    model_uri = tracking.version_uri(params.mlflow.registered_model_name, record.version)
    return tracking.predict_labels(model_uri, registry.store, table.images), True


def version_scores(
    params: Params,
    registry: tracking.Registry,
    record: tracking.VersionRecord,
    split: tuple[EvaluationSplit, DigitTable],
    robustness: RobustnessSet,
    feedback: DigitTable,
) -> VersionScores:
    """Score a version on the evaluation split, the robustness set and feedback-eval."""
    table = split[1]
    assert table.labels is not None and feedback.labels is not None
    predicted, rescored = logged_or_predicted(
        params, registry, record, table, tracking.PREDICTIONS_ARTIFACT
    )
    robust_predicted, robust_rescored = logged_or_predicted(
        params, registry, record, robustness.table, tracking.ROBUSTNESS_PREDICTIONS_ARTIFACT
    )
    feedback_predicted, feedback_rescored = (
        logged_or_predicted(
            params, registry, record, feedback, tracking.FEEDBACK_PREDICTIONS_ARTIFACT
        )
        if len(feedback)
        else (np.zeros(0, np.int64), False)
    )
    feedback_correct = np.asarray(feedback_predicted == feedback.labels)
    evaluation_run = record.tags.get("evaluation_run_id")
    metrics = registry.run_metrics(evaluation_run) if evaluation_run else {}
    correct = np.asarray(predicted == table.labels)
    recalls = [float(correct[table.labels == digit].mean()) for digit in DIGITS]
    latency = metrics.get("latency_ms_batch1", float(record.tags.get("latency_ms_batch1", "inf")))
    return VersionScores(
        version=record.version,
        family=record.tags.get("family", "?"),
        validation_accuracy=metrics.get("validation_accuracy"),
        evaluation_accuracy=float(correct.mean()),
        min_class_recall=min(recalls),
        latency_ms=latency,
        robust_accuracy=robust_accuracies(robustness, robust_predicted)["robust_accuracy"],
        feedback_accuracy=float(feedback_correct.mean()) if len(feedback) else None,
        rescored=rescored or robust_rescored or feedback_rescored,
        correct=correct,
        feedback_correct=feedback_correct,
    )


def pipeline_candidates(
    params: Params, registry: tracking.Registry
) -> list[tracking.VersionRecord]:
    """The versions models/<family>.json name, each checked to be the one its run registered."""
    records = []
    for family in FAMILIES:
        path = params.paths.trained_record(family)
        if not path.exists():
            continue
        trained = load_trained(params.paths, family)
        record = registry.version(trained.version)
        if record is None or record.run_id != trained.run_id:
            found = f"run {record.run_id}" if record else "no such version"
            raise UserError(
                f"{path}: names version {trained.version} of run {trained.run_id}, but "
                f"{registry.store.uri} has {found}; retrain, or point MLFLOW_TRACKING_URI at "
                "the store that trained it"
            )
        records.append(record)
    if not records:
        raise UserError("no trained candidates; run the train stages first")
    return records


def write_champion_submission(params: Params, store: tracking.Store, champion_version: str) -> Path:
    """The champion's predictions for data/test.csv in Kaggle's format."""
    test = load_split(Path(params.paths.prepared_dir), "test")
    labels = tracking.predict_labels(
        tracking.version_uri(params.mlflow.registered_model_name, champion_version),
        store,
        test.images,
    )
    path = params.paths.champion_submission
    write_submission(labels, path)
    return path
