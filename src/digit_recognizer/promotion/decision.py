"""A promotion decided: the candidate chosen on validation (never the test set), the gates and
the McNemar test against a sitting champion, the alias moved when they pass, and the decision
recorded on the version.

How a champion is chosen: among the pipeline's new candidates, the one with the best
*validation* accuracy; it must then pass floors on the evaluation split (accuracy, every
digit's recall, latency) and, against a sitting champion, an exact one-sided McNemar test on
the two models' predictions for the same images: it replaces the champion only when it is
right on significantly more of the images where the two disagree. Once people have corrected
answers (feedback-eval), it may instead win there, and it must be significantly worse on
neither: a candidate better on people's digits and no worse on the test set wins.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.data.feedback import FEEDBACK_EVALUATION
from digit_recognizer.data.robustness import load_robustness_set
from digit_recognizer.data.splits import evaluation_split, load_split
from digit_recognizer.errors import UserError
from digit_recognizer.promotion.candidates import pipeline_candidates, version_scores
from digit_recognizer.promotion.champion import ROLLED_BACK_TAG, promote_to
from digit_recognizer.promotion.policy import Comparison, Gate, evaluate_gates, mcnemar

PROMOTION_TAG = "promotion"  # a version's decision in full, as JSON


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
    feedback_comparison: Comparison | None = None  # on feedback-eval, once there is any
    candidates: list[dict[str, object]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def record_decision(registry: tracking.Registry, report: PromotionReport) -> None:
    """The decision on the candidate's version: its outcome, and one ``promotion`` tag holding
    why (forcing, reason, every gate, the McNemar comparisons), to keep the version's tags few."""
    if report.candidate_version is None:
        return
    details = {
        "forced": report.forced,
        "reason": report.reason,
        "gates": [asdict(gate) for gate in report.gates],
        "mcnemar": asdict(report.comparison) if report.comparison else None,
        "mcnemar_feedback": (
            asdict(report.feedback_comparison) if report.feedback_comparison else None
        ),
    }
    tags = {"promotion_decision": report.decision, PROMOTION_TAG: json.dumps(details)[:5000]}
    evaluated = registry.description(report.candidate_version)
    decision = f"{report.decision}{' (forced)' if report.forced else ''}: {report.reason}"
    registry.tag_version(
        report.candidate_version,
        tags,
        description=f"{evaluated.split(' | promotion')[0]} | promotion {decision}"
        if evaluated
        else f"promotion {decision}",
    )


def skipped(champion_version: str | None, forced: bool, reason: str) -> PromotionReport:
    """The report of a promotion that did not look at any candidate."""
    return PromotionReport(
        "skipped", None, None, champion_version, champion_version, forced=forced, reason=reason
    )


def decide(
    params: Params, registry: tracking.Registry, version: str | None, forced: bool
) -> PromotionReport:
    """Choose among the candidates (or ``version``) on validation, judge the choice by the
    gates, and move the champion when they pass (or when ``forced``); the report says why."""
    champion_version = registry.alias(tracking.CHAMPION)
    report = PromotionReport(
        "rejected", None, None, champion_version, champion_version, forced=forced
    )
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
    # what every version is scored on, read once
    split = evaluation_split(Path(params.paths.prepared_dir))
    robustness = load_robustness_set(params.paths.robustness_set)
    feedback = load_split(Path(params.paths.prepared_feedback_dir), FEEDBACK_EVALUATION)
    report.evaluation_split = split[0]
    candidates = [
        version_scores(params, registry, record, split, robustness, feedback) for record in records
    ]
    # Chosen on validation: the evaluation split only judges the choice.
    candidates.sort(key=lambda item: item.validation_accuracy or 0.0, reverse=True)
    report.candidates = [candidate.summary() for candidate in candidates]
    if not candidates:
        report.decision, report.reason = "skipped", "every candidate was rolled back before"
        return report
    chosen = candidates[0]
    if chosen.version == champion_version:
        report.decision = "skipped"
        report.reason = f"version {champion_version}, the validation pick, is already the champion"
        return report
    champion_record = registry.version(champion_version) if champion_version else None
    champion = (
        version_scores(params, registry, champion_record, split, robustness, feedback)
        if champion_record
        else None
    )
    if champion is not None:
        report.comparison = mcnemar(chosen.correct, champion.correct)
        if len(feedback):
            report.feedback_comparison = mcnemar(chosen.feedback_correct, champion.feedback_correct)
    report.gates = evaluate_gates(
        chosen, champion, report.comparison, params.promote, report.feedback_comparison
    )
    report.candidate_version, report.candidate_family = chosen.version, chosen.family
    failed = [gate.name for gate in report.gates if not gate.passed]
    if not failed or report.forced:
        report.decision = "promoted"
        report.reason = (
            ("forced past failing gates: " + ", ".join(failed)) if failed else "every gate passed"
        )
        promote_to(registry, chosen.version, report.forced, report.reason)
        report.champion_after = chosen.version
    else:
        report.reason = "failed gates: " + ", ".join(failed)
    record_decision(registry, report)
    return report
