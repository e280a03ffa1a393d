"""Fitting the final networks of a family: the schedule, the fit of one network, the
temperature that calibrates them, and the learning curve. The train stage drives these."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digit_recognizer.config import Family, TrainFamilyConfig
from digit_recognizer.data.kaggle_csv import DigitTable
from digit_recognizer.models.architectures import training_targets
from digit_recognizer.models.calibration import Calibration, calibrate, fold_temperature
from digit_recognizer.models.input_pipeline import (
    EPOCH_METRICS,
    VALIDATION_BATCH_SIZE,
    Augmentation,
    model_input,
    steps_per_epoch,
    training_batches,
)
from digit_recognizer.models.schedule import cosine_schedule
from digit_recognizer.plotting import save_figure

if TYPE_CHECKING:
    import keras


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

    assert train.labels is not None and validation.labels is not None
    fit = model.fit(
        training_batches(
            train.images,
            training_targets(train.labels, config.label_smoothing),
            config.batch_size,
            seed,
            training_augmentation(config),
        ),
        steps_per_epoch=steps_per_epoch(len(train), config.batch_size, config.min_steps_per_epoch),
        validation_data=(
            model_input(validation.images),
            training_targets(validation.labels, config.label_smoothing),
        ),
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


def validation_accuracy(model: keras.Model, validation: DigitTable) -> float:
    """The share of the validation split the (final, possibly averaged) model gets right."""
    probabilities = model.predict(
        model_input(validation.images), batch_size=VALIDATION_BATCH_SIZE, verbose=0
    )
    return float(np.mean(probabilities.argmax(axis=1) == validation.labels))
