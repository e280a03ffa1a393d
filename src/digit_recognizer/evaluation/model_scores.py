"""One model scored the same way whatever it is (ANN, CNN or a baseline): validation and the
evaluation split, the robustness set, people's corrected digits (feedback-eval), latency,
footprint; metrics files and charts written.

Final scores are named ``test_*`` whichever labelled split they come from: data/test.csv when
it has labels, else the holdout carved from train.csv (``evaluation_split`` says which). They
go to ``metrics/<model>.json`` (DVC) and, under the same names, to MLflow; so ``dvc metrics
diff`` and the MLflow UI compare ANN, CNN and baselines on the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import Params
from digit_recognizer.data.feedback import FEEDBACK_EVALUATION
from digit_recognizer.data.robustness import (
    ROBUSTNESS_SPLIT,
    load_robustness_set,
    robust_accuracies,
)
from digit_recognizer.data.splits import (
    SplitPredictions,
    evaluation_split,
    load_split,
    table_digest,
)
from digit_recognizer.evaluation.charts import plot_confident_errors, plot_confusion
from digit_recognizer.evaluation.scores import (
    ProbabilityFunction,
    confusion_rows,
    measure_latency,
    score,
)
from digit_recognizer.files import write_json, write_text
from digit_recognizer.models.calibration import plot_reliability

# What `dvc metrics show` compares: few enough keys (shared by every model) for one 160-column
# table, feedback_accuracy included; reports/<model>/scores.json and MLflow hold every score
# (macro-F1, log loss, ECE, per class and per kind of picture) and the model's size. Macro-F1
# gave its column to robust_accuracy: on MNIST's balanced classes it moves with accuracy.
HEADLINE_METRICS = (
    "evaluation_accuracy",
    "robust_accuracy",
    "feedback_accuracy",  # on feedback-eval, people's corrected digits (absent while none)
    "latency_ms_batch1",
    "train_seconds",
)


@dataclass(frozen=True)
class ModelUnderTest:
    """Any classifier: its name, a probability function over Kaggle rows, and its footprint."""

    name: str
    predict: ProbabilityFunction
    parameters: int
    size_bytes: int
    train_seconds: float
    # an ensemble's networks, scored one by one beside the ensemble (reported, never chosen on)
    members: tuple[tuple[str, ProbabilityFunction], ...] = ()


@dataclass(frozen=True)
class ModelScores:
    metrics: dict[str, float]
    artifacts: list[Path]
    evaluation: SplitPredictions
    robustness: SplitPredictions  # the robustness set's pictures, read the MNIST way
    feedback: SplitPredictions  # feedback-eval: people's corrected digits (maybe none)
    test_predictions: npt.NDArray[np.int64]  # data/test.csv, for the submission


def evaluate_model(model: ModelUnderTest, params: Params) -> ModelScores:
    """Score on validation and on the evaluation split (test.csv when labelled, else the
    holdout); write metrics JSON, DVC confusion data, confusion heatmap and error gallery.
    The same code for every model family."""
    prepared_dir = Path(params.paths.prepared_dir)
    validation, test = load_split(prepared_dir, "validation"), load_split(prepared_dir, "test")
    split, scored = evaluation_split(prepared_dir)
    assert validation.labels is not None and scored.labels is not None
    scored_probabilities = model.predict(scored.images)
    metrics = score(validation.labels, model.predict(validation.images), "validation")
    metrics.update(score(scored.labels, scored_probabilities, "evaluation"))
    robustness = load_robustness_set(params.paths.robustness_set)
    robust_predicted = model.predict(robustness.table.images).argmax(axis=1)
    metrics.update(robust_accuracies(robustness, robust_predicted))
    feedback = load_split(Path(params.paths.prepared_feedback_dir), FEEDBACK_EVALUATION)
    assert feedback.labels is not None
    feedback_predicted = (
        model.predict(feedback.images).argmax(axis=1) if len(feedback) else np.zeros(0, np.int64)
    )
    metrics["feedback_rows"] = float(len(feedback))
    if len(feedback):
        metrics["feedback_accuracy"] = float(np.mean(feedback_predicted == feedback.labels))
    for member, member_predict in model.members:
        for prefix, table in (("validation", validation), ("evaluation", scored)):
            hits = member_predict(table.images).argmax(axis=1) == table.labels
            metrics[f"{member}_{prefix}_accuracy"] = float(np.mean(hits))
    metrics.update(
        measure_latency(model.predict, validation.images, params.evaluate.latency_repeats)
    )
    metrics.update(
        parameters=float(model.parameters),
        model_size_bytes=float(model.size_bytes),
        train_seconds=round(model.train_seconds, 1),
    )

    predicted = scored_probabilities.argmax(axis=1)
    reports = params.paths.model_reports(model.name)
    confusion_png, errors_png = reports / "confusion_matrix.png", reports / "confident_errors.png"
    reliability_png = reports / "reliability.png"
    title = f"{model.name} on {split}"
    plot_reliability({model.name: scored_probabilities}, scored.labels, title, reliability_png)
    plot_confusion(scored.labels, predicted, title, confusion_png)
    plot_confident_errors(
        scored.images,
        scored.labels,
        scored_probabilities,
        params.evaluate.gallery_size,
        title,
        errors_png,
    )
    write_text(params.paths.confusion_data(model.name), confusion_rows(scored.labels, predicted))
    rounded = {key: round(value, 6) for key, value in metrics.items()}
    write_json(params.paths.all_scores(model.name), {"evaluation_split": split, **rounded})
    write_json(
        params.paths.headline_metrics(model.name),
        {key: rounded[key] for key in HEADLINE_METRICS if key in rounded},
    )
    test_predictions = predicted if split == "test" else model.predict(test.images).argmax(axis=1)
    return ModelScores(
        metrics,
        [confusion_png, errors_png, reliability_png],
        SplitPredictions(split, table_digest(scored), predicted),
        SplitPredictions(ROBUSTNESS_SPLIT, table_digest(robustness.table), robust_predicted),
        SplitPredictions(FEEDBACK_EVALUATION, table_digest(feedback), feedback_predicted),
        test_predictions,
    )
