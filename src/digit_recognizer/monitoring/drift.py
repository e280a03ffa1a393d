"""How far a window of served answers is from the reference (the evaluation split as the
champion sees it): scipy's tests for significance, an effect size for the alert.

With thousands of records any difference is significant, and with a handful none is, so a
measure alerts only when it is both significant (p below ``significance_level``) and larger
than its threshold: the digit mix by total variation, the top probability by the
Kolmogorov-Smirnov distance, pixels and the champion's embedding by the largest KS distance
over their principal axes and the residual off them (fitted on half the reference; p
Bonferroni-corrected over those).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import MonitoringConfig

CLASS_COUNT = 10


@dataclass(frozen=True)
class Measure:
    """One comparison: its size, its p-value, the threshold it is held to, and the verdict."""

    name: str
    value: float
    p_value: float | None
    threshold: float
    alert: bool
    detail: str


@dataclass(frozen=True)
class FeedbackAccuracy:
    """Accuracy on the window's corrected answers, with a 95 % Wilson interval."""

    corrected: int
    right: int
    accuracy: float | None
    low: float | None
    high: float | None


def class_mix(
    reference: npt.NDArray[np.int64], window: npt.NDArray[np.int64], config: MonitoringConfig
) -> Measure:
    """The answered digits' mix against the reference's: chi-square, total variation."""
    from scipy.stats import chisquare

    expected_share = (np.bincount(reference, minlength=CLASS_COUNT) + 0.5) / (len(reference) + 5)
    counts = np.bincount(window, minlength=CLASS_COUNT)
    observed_share = counts / max(len(window), 1)
    distance = 0.5 * float(np.abs(observed_share - expected_share).sum())
    p_value = float(chisquare(counts, expected_share * counts.sum()).pvalue)
    alert = p_value < config.significance_level and distance > config.max_class_mix_distance
    most = int(np.argmax(observed_share - expected_share))
    return Measure(
        "class_mix",
        distance,
        p_value,
        config.max_class_mix_distance,
        alert,
        f"digit {most}: {observed_share[most]:.1%} of answers against "
        f"{expected_share[most]:.1%} in the reference",
    )


def confidence_shift(
    reference: npt.NDArray[np.floating], window: npt.NDArray[np.floating], config: MonitoringConfig
) -> Measure:
    """The top probability's distribution: two-sample Kolmogorov-Smirnov."""
    from scipy.stats import ks_2samp

    result = ks_2samp(reference, window)
    distance, p_value = float(result.statistic), float(result.pvalue)
    alert = p_value < config.significance_level and distance > config.max_confidence_shift
    return Measure(
        "confidence",
        distance,
        p_value,
        config.max_confidence_shift,
        alert,
        f"median top probability {np.median(window):.3f} against {np.median(reference):.3f}",
    )


def _on_axes(axes: Any, features: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """Coordinates on the principal axes, and the distance left off them (the residual):
    a picture unlike any in the reference (inverted, say) moves off the axes, not along."""
    projected = axes.transform(features)
    residual = np.linalg.norm(features - axes.inverse_transform(projected), axis=1)
    return np.column_stack([projected, residual])


def input_shift(
    name: str,
    reference: npt.NDArray[np.floating],
    window: npt.NDArray[np.floating],
    config: MonitoringConfig,
    seed: int,
) -> Measure:
    """Features (pixels, or the embedding) on the reference's principal axes and off them;
    the largest KS distance over those, its p-value corrected for their number. The axes are
    fitted on half the reference and the other half is compared: fitted pictures sit closer
    to their own axes than any new picture does, the window's included."""
    from scipy.stats import ks_2samp
    from sklearn.decomposition import PCA

    fitted, compared = reference[::2], reference[1::2]
    components = min(config.input_components, reference.shape[1], len(fitted) - 1)
    axes = PCA(n_components=components, random_state=seed).fit(fitted)
    on_reference, on_window = _on_axes(axes, compared), _on_axes(axes, window)
    results = [
        ks_2samp(on_reference[:, column], on_window[:, column])
        for column in range(on_reference.shape[1])
    ]
    worst = int(np.argmax([result.statistic for result in results]))
    distance = float(results[worst].statistic)
    p_value = min(1.0, float(min(result.pvalue for result in results)) * len(results))
    alert = p_value < config.significance_level and distance > config.max_input_shift
    where = "off the principal axes" if worst == components else f"on axis {worst + 1}"
    return Measure(
        name,
        distance,
        p_value,
        config.max_input_shift,
        alert,
        f"largest {where} ({components} axes and the residual compared)",
    )


def feedback_accuracy(
    answered: npt.NDArray[np.int64], corrected: npt.NDArray[np.int64]
) -> FeedbackAccuracy:
    """How many corrected answers were right (the label people gave is the one answered)."""
    from scipy.stats import binomtest

    total, right = len(corrected), int((answered == corrected).sum())
    if total == 0:
        return FeedbackAccuracy(0, 0, None, None, None)
    interval = binomtest(right, total).proportion_ci(confidence_level=0.95, method="wilson")
    return FeedbackAccuracy(total, right, right / total, float(interval.low), float(interval.high))


def feedback_measure(result: FeedbackAccuracy, config: MonitoringConfig) -> Measure:
    """Alerts when even the interval's upper end is below ``min_feedback_accuracy``."""
    if result.accuracy is None or result.high is None or result.low is None:
        return Measure(
            "feedback_accuracy",
            float("nan"),
            None,
            config.min_feedback_accuracy,
            False,
            "no corrected answers in the window",
        )
    return Measure(
        "feedback_accuracy",
        result.accuracy,
        None,
        config.min_feedback_accuracy,
        result.high < config.min_feedback_accuracy,
        f"{result.right} of {result.corrected} corrected answers right "
        f"(95 % interval {result.low:.1%}-{result.high:.1%})",
    )
