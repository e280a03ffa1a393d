"""The evaluate stage: one family's model scored (see evaluation/model_scores.py), its
confusion matrix, error gallery, latency, size and submission.

The scores go to an evaluation run nested under the family's training run and onto its
registered version; the evaluation split's per-image predictions are logged too, so promotion
compares two models on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer import tracking
from digit_recognizer.config import Family, Params
from digit_recognizer.data.feedback import FEEDBACK_EVALUATION
from digit_recognizer.data.kaggle_csv import write_submission
from digit_recognizer.data.splits import prepared_data_md5, split_path
from digit_recognizer.evaluation.model_scores import ModelUnderTest, evaluate_model
from digit_recognizer.evaluation.scores import ProbabilityFunction, headline, summary_line
from digit_recognizer.models.record import load_trained


@dataclass(frozen=True)
class Evaluation:
    family: str
    metrics: dict[str, float]
    scored_split: str
    submission_path: Path


def run_evaluate(params: Params, family: Family, root: Path) -> Evaluation:
    import keras

    from digit_recognizer.models.architectures import ensemble_members
    from digit_recognizer.models.pyfunc import compiled_probabilities

    trained = load_trained(params.paths, family)
    keras_path = params.paths.trained_model(family)
    keras_model = keras.models.load_model(keras_path, compile=False)

    def probability_function(model: keras.Model) -> ProbabilityFunction:
        compiled = compiled_probabilities(model)  # what the served pyfunc runs

        def probabilities(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
            return compiled(images).astype(np.float64)

        return probabilities

    store = tracking.Store.for_project(params.mlflow, root)
    tags = tracking.lineage_tags(root, prepared_data_md5(params.paths), "evaluate", family)
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
        submission = params.paths.family_submission(family)
        write_submission(scores.test_predictions, submission)
        split = scores.evaluation.split
        tracking.set_tags({"evaluation_split": split, "registered_version": trained.version})
        tracking.log_datasets(
            [
                (split_path(Path(params.paths.prepared_dir), split), "evaluation"),
                (params.paths.robustness_set, "robustness"),
                (
                    split_path(Path(params.paths.prepared_feedback_dir), FEEDBACK_EVALUATION),
                    "feedback",
                ),
            ]
        )
        description = summary_line(family, scores.metrics, split)
        tracking.describe_run(description)
        tracking.log_metrics(scores.metrics)
        tracking.log_artifacts(scores.artifacts, "evaluation")
        tracking.log_dict(scores.evaluation.as_json(), tracking.PREDICTIONS_ARTIFACT)
        tracking.log_dict(scores.robustness.as_json(), tracking.ROBUSTNESS_PREDICTIONS_ARTIFACT)
        tracking.log_dict(scores.feedback.as_json(), tracking.FEEDBACK_PREDICTIONS_ARTIFACT)
    tracking.Registry(store, trained.registered_name).tag_version(
        trained.version,
        {
            **headline(scores.metrics),
            "evaluation_split": split,
            "evaluation_run_id": evaluation_run_id,
        },
        description=description,
    )
    return Evaluation(family, scores.metrics, split, submission)


def main(params: Params, family: Family) -> None:
    result = run_evaluate(params, family, tracking.project_root())
    print(
        f"evaluate {result.family}: {result.scored_split} accuracy "
        f"{result.metrics['evaluation_accuracy']:.4f}, "
        f"macro-F1 {result.metrics['evaluation_macro_f1']:.4f} "
        f"(validation {result.metrics['validation_accuracy']:.4f}); "
        f"submission {result.submission_path}"
    )
