"""Promotion policy as pure functions: the floors a candidate must pass, the robustness rule
against a sitting champion, and the exact McNemar test on the images where the two disagree.
No MLflow here: the registry side (which versions, their predictions, moving the alias) lives
in ``registry`` and ``champion``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import PromoteConfig


@dataclass(frozen=True)
class Gate:
    name: str
    value: float | None
    threshold: float
    passed: bool


@dataclass(frozen=True)
class VersionScores:
    """One version on today's evaluation split (its logged predictions, or re-scored)."""

    version: str
    family: str
    validation_accuracy: float | None
    evaluation_accuracy: float  # test.csv when labelled, else the holdout
    min_class_recall: float
    latency_ms: float
    robust_accuracy: float  # on the robustness set: the evaluation split as pictures
    feedback_accuracy: float | None  # on feedback-eval, people's corrected digits (None: none)
    rescored: bool  # predicted again through the registered model (other or unlogged data)
    correct: npt.NDArray[np.bool_] = field(repr=False, compare=False)
    feedback_correct: npt.NDArray[np.bool_] = field(repr=False, compare=False)

    def summary(self) -> dict[str, object]:
        hidden = ("correct", "feedback_correct")
        return {key: value for key, value in asdict(self).items() if key not in hidden}


@dataclass(frozen=True)
class Comparison:
    """Exact McNemar test on the images where candidate and champion disagree."""

    images: int
    candidate_only_right: int
    champion_only_right: int
    p_value: float  # one-sided: the candidate is right more often than chance would give
    p_value_worse: float  # one-sided the other way: the champion is right more often


def mcnemar(
    candidate_correct: npt.NDArray[np.bool_], champion_correct: npt.NDArray[np.bool_]
) -> Comparison:
    """Exact McNemar test (a binomial test on the discordant images), one-sided."""
    from scipy.stats import binomtest

    candidate_only = int((candidate_correct & ~champion_correct).sum())
    champion_only = int((~candidate_correct & champion_correct).sum())
    discordant = candidate_only + champion_only

    def p_more(successes: int) -> float:
        if not discordant:
            return 1.0
        return float(binomtest(successes, discordant, 0.5, alternative="greater").pvalue)

    return Comparison(
        len(candidate_correct),
        candidate_only,
        champion_only,
        p_more(candidate_only),
        p_more(champion_only),
    )


def evaluate_gates(
    candidate: VersionScores,
    champion: VersionScores | None,
    comparison: Comparison | None,
    gates: PromoteConfig,
    feedback_comparison: Comparison | None = None,
) -> list[Gate]:
    """Floors on the candidate alone; against a sitting champion, the McNemar test and the
    robustness rule: a candidate may not fall more than ``max_robust_accuracy_drop`` below
    the champion on the robustness set, however much better it is on the evaluation split.

    With people's corrected digits (feedback-eval), a candidate may win on either: it must be
    significantly better on the evaluation split or on feedback-eval, and significantly
    worse on neither."""
    checks = [
        Gate(
            "min_evaluation_accuracy",
            candidate.evaluation_accuracy,
            gates.min_evaluation_accuracy,
            candidate.evaluation_accuracy >= gates.min_evaluation_accuracy,
        ),
        Gate(
            "min_class_recall",
            candidate.min_class_recall,
            gates.min_class_recall,
            candidate.min_class_recall >= gates.min_class_recall,
        ),
        Gate(
            "max_latency_ms",
            candidate.latency_ms,
            gates.max_latency_ms,
            candidate.latency_ms <= gates.max_latency_ms,
        ),
        Gate(
            "min_robust_accuracy",
            candidate.robust_accuracy,
            gates.min_robust_accuracy,
            candidate.robust_accuracy >= gates.min_robust_accuracy,
        ),
    ]
    if candidate.feedback_accuracy is not None:
        checks.append(
            Gate(
                "min_feedback_accuracy",
                candidate.feedback_accuracy,
                gates.min_feedback_accuracy,
                candidate.feedback_accuracy >= gates.min_feedback_accuracy,
            )
        )
    if champion is not None:
        drop = champion.robust_accuracy - candidate.robust_accuracy
        checks.append(
            Gate(
                "max_robust_accuracy_drop",
                drop,
                gates.max_robust_accuracy_drop,
                drop <= gates.max_robust_accuracy_drop,
            )
        )
    if comparison is not None:
        better = comparison.p_value
        if feedback_comparison is not None:
            better = min(better, feedback_comparison.p_value)
        checks.append(
            Gate(
                "significantly_better",
                better,
                gates.significance_level,
                better <= gates.significance_level,
            )
        )
    if comparison is not None and feedback_comparison is not None:
        for name, worse in (
            ("not_worse_on_evaluation", comparison.p_value_worse),
            ("not_worse_on_feedback", feedback_comparison.p_value_worse),
        ):
            checks.append(
                Gate(name, worse, gates.significance_level, worse > gates.significance_level)
            )
    return checks
