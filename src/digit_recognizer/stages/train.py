"""The train stage: the final model of one family from its tuned hyperparameters.

The validation split drives early stopping and the learning-rate schedule; the CNN trains with
augmentation by default. People's corrections (feedback-train) are mixed into the train split,
each ``train.feedback_weight`` times. With ``members`` above 1, that many networks train with
successive seeds and are saved as one model averaging their probabilities (the `full` profile).
Outputs: ``models/<family>.keras``, the per-epoch history (a DVC plot), a learning-curve PNG,
``models/<family>.json`` (MLflow run, model URI and registered version) and an MLflow run whose
model is registered as a new version of the project's model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from digit_recognizer import tracking
from digit_recognizer.config import Family, Params, TrainFamilyConfig
from digit_recognizer.data.feedback import FEEDBACK_TRAIN, mixed_in
from digit_recognizer.data.splits import load_split, prepared_data_md5, split_path
from digit_recognizer.files import atomic_path, write_json, write_text
from digit_recognizer.models.architectures import (
    average_of,
    build_model,
    hyperparameters_from,
    inference_copy,
)
from digit_recognizer.models.input_pipeline import EPOCH_METRICS
from digit_recognizer.models.record import TrainedModel, load_best_hyperparameters
from digit_recognizer.models.training import (
    calibrate_networks,
    fit_member,
    member_name,
    plot_learning_curve,
    validation_accuracy,
)
from digit_recognizer.runtime.precision import announce_compute, use_precision

if TYPE_CHECKING:
    import keras


def epoch_logger(
    name: str, metric_prefix: str, config: TrainFamilyConfig
) -> Callable[[int, dict[str, float]], None]:
    """Per-epoch metrics to MLflow (``metric_prefix`` tells ensemble members apart) and a line
    on the console."""

    def log_epoch(epoch: int, logs: dict[str, float]) -> None:
        values = {metric: logs[metric] for metric in EPOCH_METRICS if metric in logs}
        tracking.log_metrics({metric_prefix + key: value for key, value in values.items()}, epoch)
        print(
            f"train {name}: epoch {epoch}/{config.max_epochs} "
            + " ".join(f"{key} {value:.4f}" for key, value in values.items()),
            flush=True,
        )

    return log_epoch


def run_train(params: Params, family: Family, root: Path) -> TrainedModel:
    import keras
    import pandas as pd
    import tensorflow as tf

    from digit_recognizer.models.pyfunc import register_keras_model

    tf.config.experimental.enable_op_determinism()
    paths = params.paths
    config = params.train.family(family)
    hyperparameters = load_best_hyperparameters(paths, family)
    typed_hyperparameters = hyperparameters_from(family, hyperparameters)
    prepared_dir = Path(paths.prepared_dir)
    feedback = load_split(Path(paths.prepared_feedback_dir), FEEDBACK_TRAIN)
    train = mixed_in(
        load_split(prepared_dir, "train"), feedback, params.train.feedback_weight, params.seed
    )
    validation = load_split(prepared_dir, "validation")
    precision, compute_params = announce_compute(params.compute.precision, f"train {family}")

    tags = tracking.lineage_tags(root, prepared_data_md5(paths), "train", family)
    store = tracking.Store.for_project(params.mlflow, root)
    with tracking.run(store, f"train-{family}", tags) as run_id:
        tracking.log_params(
            {
                "family": family,
                "seed": params.seed,
                "feedback_weight": params.train.feedback_weight,
                "feedback_train_rows": len(feedback),
                **compute_params,
                **{f"hp.{key}": value for key, value in hyperparameters.items()},
                **{
                    f"train.{key}": value
                    for key, value in config.model_dump(exclude={"augmentation"}).items()
                },
                **{
                    f"augmentation.{key}": value
                    for key, value in config.augmentation.model_dump().items()
                },
            }
        )
        tracking.log_datasets(
            [
                (split_path(prepared_dir, "train"), "training"),
                (split_path(Path(paths.prepared_feedback_dir), FEEDBACK_TRAIN), "training"),
                (split_path(prepared_dir, "validation"), "validation"),
            ]
        )
        networks: list[keras.Model] = []
        history: list[dict[str, float]] = []
        started = time.monotonic()
        # Members differ only in their seed (initial weights, batch order, augmentation).
        for member in range(config.members):
            name = member_name(family, member, config.members)
            log_epoch = epoch_logger(name, "" if config.members == 1 else f"{name}/", config)
            keras.utils.set_random_seed(params.seed + member)
            use_precision(precision)
            network = build_model(
                typed_hyperparameters, name=name, label_smoothing=config.label_smoothing
            )
            member_history = fit_member(
                network, train, validation, config, params.seed + member, log_epoch
            )
            history += [{"member": member + 1, **row} for row in member_history]
            networks.append(inference_copy(network, typed_hyperparameters))
        train_seconds = time.monotonic() - started
        calibration = calibrate_networks(networks, validation)
        tracking.log_metrics(calibration.metrics())
        model = networks[0] if len(networks) == 1 else average_of(networks, f"{family}_ensemble")
        tracking.log_params({"parameters": model.count_params()})
        with atomic_path(paths.trained_model(family)) as temporary:
            model.save(temporary)
        write_text(paths.training_history(family), pd.DataFrame(history).to_csv(index=False))
        plot_learning_curve(history, family, paths.learning_curve(family))
        final_accuracy = validation_accuracy(model, validation)
        tracking.log_metrics(
            {
                "train_seconds": train_seconds,
                "epochs_all_members": len(history),
                "final_validation_accuracy": final_accuracy,
            }
        )
        tracking.log_artifacts(
            [paths.learning_curve(family), paths.training_history(family)], "training"
        )
        networks_trained = "" if config.members == 1 else f"{config.members} networks, "
        tracking.describe_run(
            f"{family}: {networks_trained}{len(history)} epochs in {train_seconds:.0f} s, "
            f"validation accuracy {final_accuracy:.2%}"
        )
        logged = register_keras_model(
            paths.trained_model(family),
            params.mlflow.registered_model_name,
            {"family": family, "run_id": run_id},  # lineage, data and code: on the run
        )
    trained = TrainedModel(
        family=family,
        run_id=run_id,
        model_uri=logged.model_uri,
        registered_name=params.mlflow.registered_model_name,
        version=logged.version,
        epochs_all_members=len(history),
        train_seconds=round(train_seconds, 1),
    )
    write_json(paths.trained_record(family), asdict(trained))
    return trained


def main(params: Params, family: Family) -> None:
    trained = run_train(params, family, tracking.project_root())
    print(
        f"train {trained.family}: {trained.epochs_all_members} epochs in "
        f"{trained.train_seconds:.0f}s; registered {trained.registered_name} version "
        f"{trained.version}"
    )
