"""The registry side of promotion: which versions are candidates, their scores, the decision
carried out (``champion`` moves the alias), rollback, and the champion's submission.

Stages are deprecated in MLflow 3; ``champion`` is an alias (so there is only ever one), and the
registered model's ``champion_history`` tag keeps every earlier champion so rollback knows
where to go. Promotion and rollback hold a lock (``locks.registry_lock``: a file in the project
root for the local store, a PostgreSQL advisory lock for a team server), so two racing
promotions, from one machine or several, serialise instead of losing history.

How a champion is chosen: among the pipeline's new candidates, the one with the best
*validation* accuracy (never the test set); it must then pass floors on the evaluation split
(accuracy, every digit's recall, latency) and, against a sitting champion, an exact one-sided
McNemar test on the two models' predictions for the same images: it replaces the champion only
when it is right on significantly more of the images where the two disagree.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer import registry_client, tracking
from digit_recognizer.champion import (
    CHAMPION,
    ROLLED_BACK_TAG,
    promote_to,
    repair,
    roll_back,
)
from digit_recognizer.config import FAMILIES, Params
from digit_recognizer.data.kaggle_csv import DIGITS, DigitTable, write_submission
from digit_recognizer.data.robustness import load_robustness_set, robust_accuracies
from digit_recognizer.data.splits import (
    EvaluationSplit,
    SplitPredictions,
    evaluation_split,
    load_split,
    split_path,
    table_digest,
)
from digit_recognizer.errors import UserError
from digit_recognizer.locks import registry_lock
from digit_recognizer.promotion.policy import (
    Comparison,
    Gate,
    VersionScores,
    evaluate_gates,
    mcnemar,
)
from digit_recognizer.training import load_trained, record_path

EXPERIMENT_VARIABLE = "DVC_EXP_NAME"  # set by `dvc exp run` for every stage it runs


@dataclass
class PromotionReport:
    decision: str  # promoted | rejected | skipped
    candidate_version: str | None
    candidate_family: str | None
    champion_before: str | None
    champion_after: str | None
    forced: bool = False
    reason: str = ""
    evaluation_split: str | None = None
    gates: list[Gate] = field(default_factory=list)
    comparison: Comparison | None = None
    candidates: list[dict[str, object]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def logged_or_predicted(
    params: Params,
    registry: registry_client.Registry,
    record: registry_client.VersionRecord,
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
    model_uri = registry_client.version_uri(params.mlflow.registered_model_name, record.version)
    return registry_client.predict_labels(model_uri, registry.store, table.images), True


def version_scores(
    params: Params,
    registry: registry_client.Registry,
    record: registry_client.VersionRecord,
    split: tuple[EvaluationSplit, DigitTable],
) -> VersionScores:
    """Score a version on the evaluation split and on the robustness set."""
    table = split[1]
    assert table.labels is not None
    predicted, rescored = logged_or_predicted(
        params, registry, record, table, tracking.PREDICTIONS_ARTIFACT
    )
    robustness = load_robustness_set(params.paths.robustness_set)
    robust_predicted, robust_rescored = logged_or_predicted(
        params, registry, record, robustness.table, tracking.ROBUSTNESS_PREDICTIONS_ARTIFACT
    )
    evaluation_run = record.tags.get("evaluation_run_id")
    metrics = registry.run_metrics(evaluation_run) if evaluation_run else {}
    correct = np.asarray(predicted == table.labels)
    recalls = [float(correct[table.labels == digit].mean()) for digit in DIGITS]
    latency = metrics.get("latency_ms_batch1", float(record.tags.get("latency_ms_batch1", "inf")))
    return VersionScores(
        version=record.version,
        family=record.tags.get("family", "?"),
        validation_accuracy=metrics.get("validation_accuracy"),
        test_accuracy=float(correct.mean()),
        min_class_recall=min(recalls),
        latency_ms=latency,
        robust_accuracy=robust_accuracies(robustness, robust_predicted)["robust_accuracy"],
        rescored=rescored or robust_rescored,
        correct=correct,
    )


def _record_decision(registry: registry_client.Registry, report: PromotionReport) -> None:
    if report.candidate_version is None:
        return
    gates = "; ".join(
        f"{gate.name} {'pass' if gate.passed else 'FAIL'} "
        f"({gate.value if gate.value is None else round(gate.value, 6)} vs "
        f"{gate.threshold})"
        for gate in report.gates
    )
    tags = {"promotion_decision": report.decision, "promotion_gates": gates[:5000]}
    if report.comparison is not None:
        tags["promotion_mcnemar"] = json.dumps(asdict(report.comparison))
    evaluated = registry.description(report.candidate_version)
    decision = f"{report.decision}{' (forced)' if report.forced else ''}: {report.reason}"
    registry.tag_version(
        report.candidate_version,
        tags,
        description=f"{evaluated.split(' | promotion')[0]} | promotion {decision}"
        if evaluated
        else f"promotion {decision}",
    )


def pipeline_candidates(
    params: Params, registry: registry_client.Registry
) -> list[registry_client.VersionRecord]:
    """The versions models/<family>.json name, each checked to be the one its run registered."""
    records = []
    for family in FAMILIES:
        path = record_path(params, family)
        if not path.exists():
            continue
        trained = load_trained(params, family)
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
    labels = registry_client.predict_labels(
        registry_client.version_uri(params.mlflow.registered_model_name, champion_version),
        store,
        test.images,
    )
    path = params.paths.champion_submission
    write_submission(labels, path)
    return path


def promote(
    params: Params, root: Path, *, version: str | None = None, force: bool = False
) -> PromotionReport:
    """Move ``champion`` to the candidate chosen on validation (or to ``version``), gates
    permitting; then write the champion's submission for data/test.csv."""
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    registry = registry_client.Registry(store, params.mlflow.registered_model_name)
    with registry_lock(root, registry.name, store.uri, params.promote.lock_timeout_seconds):
        _say_repaired(repair(registry))
        champion_version = registry.alias(CHAMPION)
        report = PromotionReport(
            "rejected", None, None, champion_version, champion_version, forced=force
        )
        experiment = os.environ.get(EXPERIMENT_VARIABLE)
        if version is None and not params.promote.enabled:
            report.decision, report.reason = "skipped", "promote.enabled is false in params.yaml"
        elif version is None and experiment and not params.promote.from_experiments:
            report.decision = "skipped"
            report.reason = (
                f"experiment {experiment} does not move the champion (promote.from_experiments "
                "is false); promote its version deliberately with digits promote --version N"
            )
        else:
            _decide(params, registry, version, report)
        if report.champion_after:
            write_champion_submission(params, store, report.champion_after)
    return report


def _decide(
    params: Params, registry: registry_client.Registry, version: str | None, report: PromotionReport
) -> None:
    champion_version = report.champion_before
    if version is not None:
        record = registry.version(version)
        if record is None:
            raise UserError(f"registered model '{registry.name}' has no version {version}")
        records = [record]
    else:
        records = [
            record
            for record in pipeline_candidates(params, registry)
            if ROLLED_BACK_TAG not in record.tags  # a rerun does not undo a rollback
        ]
    split = evaluation_split(Path(params.paths.prepared_dir))
    report.evaluation_split = split[0]
    candidates = [version_scores(params, registry, record, split) for record in records]
    # Chosen on validation: the evaluation split only judges the choice.
    candidates.sort(key=lambda item: item.validation_accuracy or 0.0, reverse=True)
    report.candidates = [candidate.summary() for candidate in candidates]
    if not candidates:
        report.decision, report.reason = "skipped", "every candidate was rolled back before"
        return
    chosen = candidates[0]
    if chosen.version == champion_version:
        report.decision = "skipped"
        report.reason = f"version {champion_version}, the validation pick, is already the champion"
        return
    champion_record = registry.version(champion_version) if champion_version else None
    champion = version_scores(params, registry, champion_record, split) if champion_record else None
    if champion is not None:
        report.comparison = mcnemar(chosen.correct, champion.correct)
    report.gates = evaluate_gates(chosen, champion, report.comparison, params.promote)
    report.candidate_version, report.candidate_family = chosen.version, chosen.family
    failed = [gate.name for gate in report.gates if not gate.passed]
    if not failed or report.forced:
        report.decision = "promoted"
        report.reason = (
            ("forced past failing gates: " + ", ".join(failed)) if failed else "every gate passed"
        )
        promote_to(registry, chosen.version, report.forced)
        report.champion_after = chosen.version
    else:
        report.reason = "failed gates: " + ", ".join(failed)
    _record_decision(registry, report)


def _say_repaired(repaired: str | None) -> None:
    if repaired:
        print(f"registry: {repaired}", flush=True)


def rollback(params: Params, root: Path) -> tuple[str, str]:
    """Move ``champion`` back to the previous champion; return (from, to)."""
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    registry = registry_client.Registry(store, params.mlflow.registered_model_name)
    with registry_lock(root, registry.name, store.uri, params.promote.lock_timeout_seconds):
        _say_repaired(repair(registry))
        current = registry.alias(CHAMPION)
        if current is None:
            raise UserError(f"registered model '{registry.name}' has no champion to roll back")
        moved = roll_back(registry)
        if moved is None:
            raise UserError(f"version {current} is the first champion; nothing to roll back to")
        previous = moved[1]
        if split_path(Path(params.paths.prepared_dir), "test").exists():
            write_champion_submission(params, store, previous)
    return current, previous
