"""Scores of one model's probabilities: accuracy, macro-F1, log loss, calibration, per class;
latency; and the one-line summaries the MLflow lists show."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from digit_recognizer.data.kaggle_csv import DIGITS
from digit_recognizer.models.calibration import expected_calibration_error


def score(
    labels: npt.NDArray[np.uint8], probabilities: npt.NDArray[np.float64], prefix: str
) -> dict[str, float]:
    """accuracy, macro-F1, log loss, expected calibration error (15 bins) and per-class
    precision/recall/F1, named ``<prefix>_*``."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support

    predicted = probabilities.argmax(axis=1)
    clipped = np.clip(probabilities, 1e-7, 1.0)  # float32 softmax can hold exact zeros
    clipped /= clipped.sum(axis=1, keepdims=True)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=list(DIGITS), zero_division=0
    )
    metrics = {
        f"{prefix}_accuracy": float(accuracy_score(labels, predicted)),
        f"{prefix}_macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        f"{prefix}_log_loss": float(log_loss(labels, clipped, labels=list(DIGITS))),
        f"{prefix}_ece": expected_calibration_error(probabilities, labels),
    }
    for digit in DIGITS:
        metrics[f"{prefix}_precision_{digit}"] = float(precision[digit])
        metrics[f"{prefix}_recall_{digit}"] = float(recall[digit])
        metrics[f"{prefix}_f1_{digit}"] = float(f1[digit])
    return metrics


ProbabilityFunction = Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float64]]


def measure_latency(
    predict: ProbabilityFunction, images: npt.NDArray[np.uint8], repeats: int
) -> dict[str, float]:
    """Median milliseconds per image for a single image and for batches of 256."""
    measured = {}
    for batch_size in (1, 256):
        batch = np.resize(images, (batch_size, images.shape[1]))
        predict(batch)  # warm-up: graph tracing and caches are not inference
        timings = []
        for _ in range(repeats if batch_size == 1 else max(3, repeats // 10)):
            started = time.perf_counter()
            predict(batch)
            timings.append((time.perf_counter() - started) * 1000 / batch_size)
        measured[f"latency_ms_batch{batch_size}"] = float(np.median(timings))
    return measured


def confusion_rows(labels: npt.NDArray[np.uint8], predicted: npt.NDArray[np.int64]) -> str:
    """``actual,predicted`` per image: the input of DVC's confusion template."""
    return "actual,predicted\n" + "".join(
        f"{a},{p}\n" for a, p in zip(labels, predicted, strict=True)
    )


def summary_line(model: str, metrics: dict[str, float], split: str) -> str:
    """What a run or version achieved, in one line for the MLflow runs and versions lists."""
    return (
        f"{model}: {metrics['evaluation_accuracy']:.2%} on {split} (validation "
        f"{metrics['validation_accuracy']:.2%}), macro-F1 {metrics['evaluation_macro_f1']:.4f}, "
        f"{metrics['robust_accuracy']:.2%} on the robustness set, "
        f"{metrics['latency_ms_batch1']:.1f} ms/image, {metrics['train_seconds']:.0f} s training"
    )


# The scores a registered version carries as tags (what `digits registry` lists and the
# registry page shows); every score is in the evaluation run the version's tags link to.
HEADLINE_SCORES = (
    "evaluation_accuracy",
    "evaluation_macro_f1",
    "latency_ms_batch1",
    "robust_accuracy",
)


def evaluation_score(values: Mapping[str, str], name: str) -> str | None:
    """A score on the evaluation split (``accuracy``, ``macro_f1``) from a version's tags or a
    run's metrics; versions registered before the scores said their split carry ``test_*``."""
    return values.get(f"evaluation_{name}", values.get(f"test_{name}"))


def headline(metrics: dict[str, float]) -> dict[str, str]:
    """The scores worth a registry tag."""
    return {key: f"{metrics[key]:.6f}" for key in HEADLINE_SCORES if key in metrics}
