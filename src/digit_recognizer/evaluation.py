"""The evaluate stage: scores, confusion matrix, error gallery, latency, size, submission.

Final scores are named ``test_*`` whichever labelled split they come from: data/test.csv when
it has labels, else the holdout carved from train.csv (``evaluation_split`` says which, in the
metrics file, on the run and on the version). They go to ``metrics/<family>.json`` (DVC) and,
under the same names, to an evaluation run nested under the family's training run and to its
registered version; so ``dvc metrics diff`` and the MLflow UI compare ANN, CNN and baselines on
the same keys. The evaluation split's per-image predictions are logged too: promotion compares
two models on the same images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer import registry_client, tracking
from digit_recognizer.config import Family, Params
from digit_recognizer.data.kaggle_csv import DIGITS, IMAGE_SIDE, write_submission
from digit_recognizer.data.robustness import (
    ROBUSTNESS_SPLIT,
    load_robustness_set,
    robust_accuracies,
)
from digit_recognizer.data.splits import (
    SplitPredictions,
    evaluation_split,
    load_split,
    prepared_data_md5,
    table_digest,
)
from digit_recognizer.files import write_json, write_text
from digit_recognizer.models.calibration import expected_calibration_error, plot_reliability
from digit_recognizer.plotting import save_figure

# What `dvc metrics show` compares: few enough keys (shared by every model) for one 160-column
# table; reports/<model>/scores.json and MLflow hold every score (macro-F1, ECE, per class and
# per kind of picture too). Macro-F1 gave its column to robust_accuracy: on MNIST's balanced
# classes it moves with accuracy.
HEADLINE_METRICS = (
    "test_accuracy",
    "test_log_loss",
    "robust_accuracy",
    "latency_ms_batch1",
    "model_size_bytes",
    "train_seconds",
)


@dataclass(frozen=True)
class Evaluation:
    family: str
    metrics: dict[str, float]
    scored_split: str
    submission_path: Path


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


def plot_confusion(
    labels: npt.NDArray[np.uint8], predicted: npt.NDArray[np.int64], title: str, path: Path
) -> None:
    import seaborn as sns
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(labels, predicted, labels=list(DIGITS))
    figure = Figure(figsize=(7, 6))
    axes = figure.subplots()
    sns.heatmap(
        matrix,
        annot=True,
        fmt="d",
        cmap="Blues",
        cbar=False,
        ax=axes,
        norm=None,
        annot_kws={"size": 8},
    )
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    save_figure(figure, path)


def plot_confident_errors(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    probabilities: npt.NDArray[np.float64],
    count: int,
    title: str,
    path: Path,
) -> None:
    """The most confidently wrong digits: why image classification is hard, shown."""
    from matplotlib.figure import Figure

    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    ranked = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:count]
    columns = 8
    rows = max(1, -(-len(ranked) // columns))
    figure = Figure(figsize=(columns * 1.4, rows * 1.6 + 0.6))
    grid = figure.subplots(rows, columns, squeeze=False)
    for position, axes in enumerate(grid.ravel()):
        axes.axis("off")
        if position < len(ranked):
            index = ranked[position]
            axes.imshow(images[index].reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray_r")
            axes.set_title(
                f"{labels[index]}→{predicted[index]} {probabilities[index, predicted[index]]:.2f}",
                fontsize=8,
            )
    figure.suptitle(f"{title}: {len(wrong)} errors, most confident first (true→predicted p)")
    save_figure(figure, path)


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
    metrics.update(score(scored.labels, scored_probabilities, "test"))
    robustness = load_robustness_set(params.paths.robustness_set)
    robust_predicted = model.predict(robustness.table.images).argmax(axis=1)
    metrics.update(robust_accuracies(robustness, robust_predicted))
    for member, member_predict in model.members:
        for prefix, table in (("validation", validation), ("test", scored)):
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
    reports = Path(params.paths.reports_dir) / model.name
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
    write_text(
        Path(params.paths.plots_dir) / model.name / "confusion.csv",
        confusion_rows(scored.labels, predicted),
    )
    rounded = {key: round(value, 6) for key, value in metrics.items()}
    write_json(params.paths.all_scores(model.name), {"evaluation_split": split, **rounded})
    write_json(
        params.paths.headline_metrics(model.name),
        {key: rounded[key] for key in HEADLINE_METRICS},
    )
    test_predictions = predicted if split == "test" else model.predict(test.images).argmax(axis=1)
    return ModelScores(
        metrics,
        [confusion_png, errors_png, reliability_png],
        SplitPredictions(split, table_digest(scored), predicted),
        SplitPredictions(ROBUSTNESS_SPLIT, table_digest(robustness.table), robust_predicted),
        test_predictions,
    )


def summary_line(model: str, metrics: dict[str, float], split: str) -> str:
    """What a run or version achieved, in one line for the MLflow runs and versions lists."""
    return (
        f"{model}: {metrics['test_accuracy']:.2%} on {split} (validation "
        f"{metrics['validation_accuracy']:.2%}), macro-F1 {metrics['test_macro_f1']:.4f}, "
        f"{metrics['robust_accuracy']:.2%} on the robustness set, "
        f"{metrics['latency_ms_batch1']:.1f} ms/image, {metrics['train_seconds']:.0f} s training"
    )


def headline(metrics: dict[str, float]) -> dict[str, str]:
    """The scores worth a registry tag."""
    return {
        key: f"{value:.6f}"
        for key, value in metrics.items()
        if key.endswith(("_accuracy", "_macro_f1", "_log_loss", "_ece"))
        or key.startswith(("latency", "robust_accuracy"))
    }


def run_evaluate(params: Params, family: Family, root: Path) -> Evaluation:
    import keras

    from digit_recognizer.models.architectures import ensemble_members
    from digit_recognizer.models.pyfunc import compiled_probabilities
    from digit_recognizer.training import load_trained, model_path

    trained = load_trained(params, family)
    keras_path = model_path(params, family)
    keras_model = keras.models.load_model(keras_path, compile=False)

    def probability_function(model: keras.Model) -> ProbabilityFunction:
        compiled = compiled_probabilities(model)  # what the served pyfunc runs

        def probabilities(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
            return compiled(images).astype(np.float64)

        return probabilities

    store = tracking.Store.for_project(params.mlflow, root)
    tags = {
        "stage": "evaluate",
        "family": family,
        **tracking.lineage_tags(root, prepared_data_md5(params.paths)),
    }
    # Its own run, nested under the training run: a failed evaluation never marks training
    # FAILED, and the UI shows the scores beside the run that produced the model.
    with tracking.run(
        store, f"evaluate-{family}", tags, parent_run_id=trained.run_id
    ) as evaluation_run_id:
        scores = evaluate_model(
            ModelUnderTest(
                family,
                probability_function(keras_model),
                keras_model.count_params(),
                keras_path.stat().st_size,
                trained.train_seconds,
                tuple(
                    (member.name, probability_function(member))
                    for member in ensemble_members(keras_model)
                ),
            ),
            params,
        )
        submission = Path(params.paths.submissions_dir) / f"{family}.csv"
        write_submission(scores.test_predictions, submission)
        split = scores.evaluation.split
        tracking.set_tags({"evaluation_split": split, "registered_version": trained.version})
        description = summary_line(family, scores.metrics, split)
        tracking.describe_run(description)
        tracking.log_metrics(scores.metrics)
        tracking.log_artifacts(scores.artifacts, "evaluation")
        tracking.log_dict(scores.evaluation.as_json(), tracking.PREDICTIONS_ARTIFACT)
        tracking.log_dict(scores.robustness.as_json(), tracking.ROBUSTNESS_PREDICTIONS_ARTIFACT)
    registry_client.Registry(store, trained.registered_name).tag_version(
        trained.version,
        {
            **headline(scores.metrics),
            "evaluation_split": split,
            "evaluation_run_id": evaluation_run_id,
        },
        description=description,
    )
    return Evaluation(family, scores.metrics, split, submission)
