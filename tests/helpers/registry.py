"""Registered versions with known predictions, for registry tests.

Each version is a real tiny Keras model behind the project's pyfunc (what re-scoring loads),
and its evaluation logs per-image predictions on the project's evaluation split in which
exactly the images listed in ``wrong`` are misclassified, so a test decides how two versions
agree and differ.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digit_recognizer import tracking
from digit_recognizer.config import MlflowConfig
from digit_recognizer.data.robustness import ROBUSTNESS_SPLIT, load_robustness_set
from digit_recognizer.data.splits import SplitPredictions, evaluation_split, table_digest
from digit_recognizer.models.architectures import AnnHyperparameters, build_model
from digit_recognizer.models.pyfunc import register_keras_model


@dataclass(frozen=True)
class Candidate:
    version: str
    run_id: str


def register_candidate(
    root: Path,
    family: str,
    wrong: Iterable[int],
    *,
    validation_accuracy: float = 0.99,
    latency_ms: float = 1.0,
    other_data: bool = False,
    robust_wrong: Iterable[int] = (),
) -> Candidate:
    """Log a training run with an evaluation and register its model.

    ``other_data``: the logged predictions are for other images (an earlier test file).
    ``robust_wrong``: the robustness set's pictures it gets wrong (the robustness stage ran).
    """
    split, table = evaluation_split(root / "prepared")
    assert table.labels is not None
    predicted = table.labels.astype(np.int64)
    wrong_index = np.asarray(list(wrong), dtype=np.int64)
    predicted[wrong_index] = (predicted[wrong_index] + 1) % 10
    accuracy = float((predicted == table.labels).mean())
    store = tracking.Store.for_project(MlflowConfig(), root)
    with tracking.run(store, f"train-{family}", {"stage": "train", "family": family}) as run_id:
        tracking.log_metrics(
            {
                "validation_accuracy": validation_accuracy,
                "evaluation_accuracy": accuracy,
                "latency_ms_batch1": latency_ms,
            }
        )
        digest = "other-images" if other_data else table_digest(table)
        tracking.log_dict(
            SplitPredictions(split, digest, predicted).as_json(), tracking.PREDICTIONS_ARTIFACT
        )
        robustness = load_robustness_set(root / "robustness" / "robustness.npz").table
        assert robustness.labels is not None
        robust_predicted = robustness.labels.astype(np.int64)
        robust_index = np.asarray(list(robust_wrong), dtype=np.int64)
        robust_predicted[robust_index] = (robust_predicted[robust_index] + 1) % 10
        tracking.log_dict(
            SplitPredictions(
                ROBUSTNESS_SPLIT, table_digest(robustness), robust_predicted
            ).as_json(),
            tracking.ROBUSTNESS_PREDICTIONS_ARTIFACT,
        )
        with tempfile.TemporaryDirectory() as folder:
            keras_path = Path(folder) / "model.keras"
            build_model(AnnHyperparameters(hidden_layers=1, units=8)).save(keras_path)
            logged = register_keras_model(
                keras_path,
                "digit-recognizer",
                {
                    "family": family,
                    "run_id": run_id,
                    "evaluation_run_id": run_id,
                    "evaluation_accuracy": f"{accuracy:.6f}",
                    "latency_ms_batch1": f"{latency_ms:.6f}",
                },
            )
    return Candidate(logged.version, run_id)
