"""The promotion gates once people have corrected answers: a candidate better on their digits
and no worse on the test set wins; one significantly worse on either is refused, and told
which."""

from __future__ import annotations

import numpy as np

from digit_recognizer.config import PromoteConfig
from digit_recognizer.promotion.policy import VersionScores, evaluate_gates, mcnemar

GATES = PromoteConfig()


def scores(
    version: str, test_wrong: int, feedback_wrong: int, feedback_rows: int = 300
) -> VersionScores:
    """A version wrong on the first ``test_wrong`` of 1,000 test images and the first
    ``feedback_wrong`` feedback-eval pictures."""
    correct = np.arange(1_000) >= test_wrong
    feedback_correct = np.arange(feedback_rows) >= feedback_wrong
    return VersionScores(
        version=version,
        family="cnn",
        validation_accuracy=0.99,
        evaluation_accuracy=float(correct.mean()),
        min_class_recall=0.98,
        latency_ms=1.0,
        robust_accuracy=0.97,
        feedback_accuracy=float(feedback_correct.mean()) if feedback_rows else None,
        rescored=False,
        correct=correct,
        feedback_correct=feedback_correct,
    )


def judged(candidate: VersionScores, champion: VersionScores) -> dict[str, bool]:
    comparison = mcnemar(candidate.correct, champion.correct)
    feedback = (
        mcnemar(candidate.feedback_correct, champion.feedback_correct)
        if len(candidate.feedback_correct)
        else None
    )
    gates = evaluate_gates(candidate, champion, comparison, GATES, feedback)
    return {gate.name: gate.passed for gate in gates}


def test_better_on_peoples_digits_and_level_on_the_test_set_wins() -> None:
    # given a champion wrong on 18 of 300 corrected digits, a candidate wrong on 3; both 1 % on test
    gates = judged(scores("2", test_wrong=10, feedback_wrong=3), scores("1", 10, 18))
    # then every gate passes, the feedback ones included
    assert all(gates.values()), gates
    assert {"min_feedback_accuracy", "not_worse_on_evaluation", "not_worse_on_feedback"} <= set(
        gates
    )


def test_better_on_the_test_set_but_worse_on_peoples_digits_is_refused() -> None:
    gates = judged(scores("2", test_wrong=0, feedback_wrong=20), scores("1", 12, 3))
    assert gates["significantly_better"] and not gates["not_worse_on_feedback"], gates


def test_better_on_peoples_digits_but_worse_on_the_test_set_is_refused() -> None:
    gates = judged(scores("2", test_wrong=15, feedback_wrong=0), scores("1", 2, 20))
    assert gates["significantly_better"] and not gates["not_worse_on_evaluation"], gates


def test_a_candidate_below_the_feedback_floor_is_refused() -> None:
    gates = judged(scores("2", test_wrong=0, feedback_wrong=40), scores("1", 20, 60))
    assert not gates["min_feedback_accuracy"] and gates["significantly_better"], gates


def test_without_corrections_the_gates_are_the_plain_ones() -> None:
    gates = judged(scores("2", 0, 0, feedback_rows=0), scores("1", 12, 0, feedback_rows=0))
    assert set(gates) == {
        "min_evaluation_accuracy",
        "min_class_recall",
        "max_latency_ms",
        "min_robust_accuracy",
        "max_robust_accuracy_drop",
        "significantly_better",
    }
    assert all(gates.values())
