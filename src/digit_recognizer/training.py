"""The train stage: the final model of one family from its tuned hyperparameters.

The validation split drives early stopping and the learning-rate schedule; the CNN trains with
augmentation by default. With ``members`` above 1, that many networks train with successive
seeds and are saved as one model averaging their probabilities (the `full` profile).
Outputs: ``models/<family>.keras``, the per-epoch history (a DVC plot), a learning-curve PNG,
``models/<family>.json`` (MLflow run, model URI and registered version) and an MLflow run whose
model is registered as a new version of the project's model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digit_recognizer import tracking
from digit_recognizer.config import Family, Params, TrainFamilyConfig
from digit_recognizer.data.kaggle_csv import DigitTable
from digit_recognizer.data.splits import load_split, prepared_data_md5
from digit_recognizer.errors import UserError
from digit_recognizer.files import atomic_path, write_json, write_text
from digit_recognizer.models.architectures import average_of, build_model, hyperparameters_from
from digit_recognizer.models.calibration import Calibration, calibrate, fold_temperature
from digit_recognizer.models.fitting import (
    EPOCH_METRICS,
    VALIDATION_BATCH_SIZE,
    Augmentation,
    model_input,
    steps_per_epoch,
    training_batches,
)
from digit_recognizer.models.precision import (
    announce_compute,
    inference_copy,
    use_precision,
)
from digit_recognizer.models.schedule import cosine_schedule
from digit_recognizer.plotting import save_figure

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class TrainedModel:
    """What later stages need to find a family's model, in MLflow and on disk."""

    family: Family
    run_id: str
    model_uri: str
    registered_name: str
    version: str
    epochs_trained: int
    train_seconds: float


def model_path(params: Params, family: Family) -> Path:
    return Path(params.paths.models_dir) / f"{family}.keras"


def record_path(params: Params, family: Family) -> Path:
    return Path(params.paths.models_dir) / f"{family}.json"


def history_path(params: Params, family: Family) -> Path:
    return Path(params.paths.plots_dir) / family / "history.csv"


def load_trained(params: Params, family: Family) -> TrainedModel:
    path = record_path(params, family)
    try:
        return TrainedModel(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise UserError(
            f"{path}: not found; run the train stage first (dvc repro train@{family})"
        ) from None


def load_best_hyperparameters(params: Params, family: Family) -> dict[str, Any]:
    path = Path(params.paths.hyperparameters_dir) / f"{family}.json"
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{path}: not found; run the tune stage first (dvc repro tune@{family})"
        ) from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: invalid JSON at line {error.lineno}") from None
    try:
        hyperparameters_from(family, values)
    except TypeError as error:
        raise UserError(f"{path}: not {family} hyperparameters ({error})") from None
    return dict(values)


def plot_learning_curve(history: list[dict[str, float]], family: Family, path: Path) -> None:
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    frame = pd.DataFrame(history)
    figure = Figure(figsize=(10, 4))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        long = frame.melt(
            id_vars="epoch",
            value_vars=[metric, f"val_{metric}"],
            var_name="split",
            value_name="value",
        )
        sns.lineplot(data=long, x="epoch", y="value", hue="split", marker="o", ax=axes)
        axes.set_title(f"{family}: {metric}")
    save_figure(figure, path)


def training_augmentation(config: TrainFamilyConfig) -> Augmentation | None:
    jitter = config.augmentation
    if not jitter.enabled:
        return None
    return Augmentation(jitter.rotation_degrees, jitter.shift_fraction, jitter.zoom_fraction)


def schedule_callbacks(config: TrainFamilyConfig) -> list[Any]:
    """What drives the rate and the length of a fit.

    plateau: the rate halves when validation loss stalls, and training stops early (restoring
    the best weights) once validation accuracy stops improving. cosine: the rate anneals to zero
    at ``max_epochs`` and the run goes the full length; the schedule is the length, and stopping
    in its noisy high-rate phase left an MLP 0.4 points short.
    """
    import keras

    if config.learning_rate_schedule == "cosine":
        return [cosine_schedule(config.max_epochs, config.warmup_epochs)]
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.reduce_lr_factor, patience=config.reduce_lr_patience
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_accuracy",
            mode="max",
            patience=config.early_stopping_patience,
            restore_best_weights=True,
        ),
    ]


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


def member_name(family: Family, member: int, members: int) -> str:
    return family if members == 1 else f"{family}_{member + 1}"


def fit_member(
    model: keras.Model,
    train: DigitTable,
    validation: DigitTable,
    config: TrainFamilyConfig,
    seed: int,
    log_epoch: Callable[[int, dict[str, float]], None],
) -> list[dict[str, float]]:
    """Fit one network; return its per-epoch metrics."""
    import keras

    assert train.labels is not None
    fit = model.fit(
        training_batches(
            train.images, train.labels, config.batch_size, seed, training_augmentation(config)
        ),
        steps_per_epoch=steps_per_epoch(len(train), config.batch_size, config.min_steps_per_epoch),
        validation_data=(model_input(validation.images), validation.labels),
        validation_batch_size=VALIDATION_BATCH_SIZE,
        shuffle=False,  # the batches are shuffled already (Keras warns otherwise)
        epochs=config.max_epochs,
        verbose=0,
        callbacks=[
            *schedule_callbacks(config),
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: log_epoch(epoch + 1, logs or {})
            ),
        ],
    )
    return [
        {"epoch": epoch + 1, **{name: float(fit.history[name][epoch]) for name in EPOCH_METRICS}}
        for epoch in range(len(fit.history["loss"]))
    ]


def calibrate_networks(networks: list[keras.Model], validation: DigitTable) -> Calibration:
    """Fit one temperature to the networks' averaged validation probabilities and fold it into
    each network's weights (the winning digit never changes)."""
    assert validation.labels is not None
    members = [
        network.predict(
            model_input(validation.images), batch_size=VALIDATION_BATCH_SIZE, verbose=0
        ).astype(np.float64)
        for network in networks
    ]
    calibration = calibrate(members, validation.labels)
    for network in networks:
        fold_temperature(network, calibration.temperature)
    print(
        f"train: temperature {calibration.temperature:.3f} on validation: ECE "
        f"{calibration.ece_before:.2%} -> {calibration.ece_after:.2%}, log loss "
        f"{calibration.log_loss_before:.4f} -> {calibration.log_loss_after:.4f}",
        flush=True,
    )
    return calibration


def register_keras_model(
    keras_path: Path, registered_name: str, tags: dict[str, str]
) -> tracking.LoggedModel:
    """Register a saved Keras model as a new version of the Kaggle-row pyfunc."""
    from digit_recognizer.models.pyfunc import DigitClassifier, signature

    return tracking.log_and_register_model(
        keras_path, registered_name, tags, DigitClassifier(), signature()
    )


def run_train(params: Params, family: Family, root: Path) -> TrainedModel:
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    config = params.train.family(family)
    hyperparameters = load_best_hyperparameters(params, family)
    typed_hyperparameters = hyperparameters_from(family, hyperparameters)
    prepared_dir = Path(params.paths.prepared_dir)
    train, validation = load_split(prepared_dir, "train"), load_split(prepared_dir, "validation")
    precision, compute_params = announce_compute(params.compute.precision, f"train {family}")

    tags = {
        "stage": "train",
        "family": family,
        **tracking.lineage_tags(root, prepared_data_md5(params.paths)),
    }
    store = tracking.Store.for_project(params.mlflow, root)
    with tracking.run(store, f"train-{family}", tags) as run_id:
        tracking.log_params(
            {
                "family": family,
                "seed": params.seed,
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
        keras_path = model_path(params, family)
        with atomic_path(keras_path) as temporary:
            model.save(temporary)
        import pandas as pd

        write_text(history_path(params, family), pd.DataFrame(history).to_csv(index=False))
        curve_path = Path(params.paths.reports_dir) / family / "learning_curve.png"
        plot_learning_curve(history, family, curve_path)
        validation_accuracy = float(
            np.mean(
                model.predict(
                    model_input(validation.images), batch_size=VALIDATION_BATCH_SIZE, verbose=0
                ).argmax(axis=1)
                == validation.labels
            )
        )
        tracking.log_metrics(
            {
                "train_seconds": train_seconds,
                "epochs_trained": len(history),
                "best_val_accuracy": validation_accuracy,
            }
        )
        tracking.log_artifacts([curve_path, history_path(params, family)], "training")
        networks_trained = "" if config.members == 1 else f"{config.members} networks, "
        tracking.describe_run(
            f"{family}: {networks_trained}{len(history)} epochs in {train_seconds:.0f} s, "
            f"validation accuracy {validation_accuracy:.2%}"
        )
        logged = register_keras_model(
            keras_path,
            params.mlflow.registered_model_name,
            {
                "family": family,
                "run_id": run_id,
                "val_accuracy": f"{validation_accuracy:.4f}",
                **tags,
            },
        )
    trained = TrainedModel(
        family=family,
        run_id=run_id,
        model_uri=logged.model_uri,
        registered_name=params.mlflow.registered_model_name,
        version=logged.version,
        epochs_trained=len(history),
        train_seconds=round(train_seconds, 1),
    )
    write_json(record_path(params, family), asdict(trained))
    return trained
