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
    test_accuracy: float  # on the evaluation split, whichever it is
    min_class_recall: float
    latency_ms: float
    robust_accuracy: float  # on the robustness set: the evaluation split as pictures
    rescored: bool  # predicted again through the registered model (other or unlogged data)
    correct: npt.NDArray[np.bool_] = field(repr=False, compare=False)

    def summary(self) -> dict[str, object]:
        return {key: value for key, value in asdict(self).items() if key != "correct"}


@dataclass(frozen=True)
class Comparison:
    """Exact McNemar test on the images where candidate and champion disagree."""

    images: int
    candidate_only_right: int
    champion_only_right: int
    p_value: float  # one-sided: the candidate is right more often than chance would give


def mcnemar(
    candidate_correct: npt.NDArray[np.bool_], champion_correct: npt.NDArray[np.bool_]
) -> Comparison:
    """Exact McNemar test (a binomial test on the discordant images), one-sided."""
    from scipy.stats import binomtest

    candidate_only = int((candidate_correct & ~champion_correct).sum())
    champion_only = int((~candidate_correct & champion_correct).sum())
    discordant = candidate_only + champion_only
    p_value = (
        float(binomtest(candidate_only, discordant, 0.5, alternative="greater").pvalue)
        if discordant
        else 1.0
    )
    return Comparison(len(candidate_correct), candidate_only, champion_only, p_value)


def evaluate_gates(
    candidate: VersionScores,
    champion: VersionScores | None,
    comparison: Comparison | None,
    gates: PromoteConfig,
) -> list[Gate]:
    """Floors on the candidate alone; against a sitting champion, the McNemar test and the
    robustness rule: a candidate may not fall more than ``max_robust_accuracy_drop`` below
    the champion on the robustness set, however much better it is on the evaluation split."""
    checks = [
        Gate(
            "min_test_accuracy",
            candidate.test_accuracy,
            gates.min_test_accuracy,
            candidate.test_accuracy >= gates.min_test_accuracy,
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
        checks.append(
            Gate(
                "significantly_better",
                comparison.p_value,
                gates.significance_level,
                comparison.p_value <= gates.significance_level,
            )
        )
    return checks
