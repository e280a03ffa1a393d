"""Real registered versions (tiny Keras models behind the project's pyfunc) for registry tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

from digit_recognizer import tracking
from digit_recognizer.config import MlflowConfig
from digit_recognizer.data.kaggle_csv import DIGITS
from digit_recognizer.models.architectures import AnnHyperparameters, build_model


def register_candidate(
    root: Path,
    family: str,
    accuracy: float,
    *,
    worst_recall: float = 0.99,
    latency_ms: float = 1.0,
    data_md5: str = "data-v1",
) -> str:
    """Log a run with evaluation metrics and register its model; return the version."""
    store = tracking.Store.for_project(MlflowConfig(), root)
    tags = {"stage": "train", "family": family, "data_md5": data_md5}
    with tracking.run(store, f"train-{family}", tags) as run_id:
        metrics = {
            "test_accuracy": accuracy,
            "latency_ms_batch1": latency_ms,
            **{f"test_recall_{digit}": 0.995 for digit in DIGITS},
        }
        metrics["test_recall_8"] = worst_recall
        tracking.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as folder:
            keras_path = Path(folder) / "model.keras"
            build_model(AnnHyperparameters(hidden_layers=1, units=8)).save(keras_path)
            logged = tracking.log_and_register_model(
                keras_path,
                "digit-recognizer",
                {
                    "family": family,
                    "run_id": run_id,
                    "data_md5": data_md5,
                    "test_accuracy": f"{accuracy:.6f}",
                    "latency_ms_batch1": f"{latency_ms:.6f}",
                },
            )
    return logged.version
