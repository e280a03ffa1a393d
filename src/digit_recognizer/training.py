"""The train stage: the final model of one family from its tuned hyperparameters.

The validation split drives early stopping and the learning-rate schedule; the CNN trains with
augmentation by default. Outputs: ``models/<family>.keras``, the per-epoch history (a DVC plot),
a learning-curve PNG, ``models/<family>.json`` (MLflow run, model URI and registered version)
and an MLflow run whose model is registered as a new version of the project's model.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from digit_recognizer import tracking
from digit_recognizer.config import Family, Params, TrainFamilyConfig
from digit_recognizer.data.splits import load_split, prepared_data_md5
from digit_recognizer.errors import UserError
from digit_recognizer.files import atomic_path, write_json, write_text
from digit_recognizer.models.architectures import Augmentation, build_model, hyperparameters_from
from digit_recognizer.models.fitting import EPOCH_METRICS, model_input, repeat_to_min_steps
from digit_recognizer.models.schedule import cosine_schedule
from digit_recognizer.plotting import save_figure


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


def learning_rate_callback(config: TrainFamilyConfig) -> Any:
    """The callback that drives the rate: validation loss plateaus or cosine annealing."""
    import keras

    if config.learning_rate_schedule == "cosine":
        return cosine_schedule(config.max_epochs, config.warmup_epochs)
    return keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=config.reduce_lr_factor, patience=config.reduce_lr_patience
    )


def run_train(params: Params, family: Family, root: Path) -> TrainedModel:
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(params.seed)
    config = params.train.family(family)
    hyperparameters = load_best_hyperparameters(params, family)
    prepared_dir = Path(params.paths.prepared_dir)
    train, validation = load_split(prepared_dir, "train"), load_split(prepared_dir, "validation")
    augmentation = (
        Augmentation(
            config.augmentation.rotation_degrees,
            config.augmentation.shift_fraction,
            config.augmentation.zoom_fraction,
        )
        if config.augmentation.enabled
        else None
    )
    model = build_model(hyperparameters_from(family, hyperparameters), augmentation, params.seed)

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
                "parameters": model.count_params(),
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

        class EpochLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                logs = logs or {}
                tracking.log_metrics(
                    {name: logs[name] for name in EPOCH_METRICS if name in logs}, step=epoch + 1
                )
                print(
                    f"train {family}: epoch {epoch + 1}/{config.max_epochs} "
                    + " ".join(
                        f"{name} {logs.get(name, float('nan')):.4f}" for name in EPOCH_METRICS
                    ),
                    flush=True,
                )

        assert train.labels is not None
        train_images, train_labels = repeat_to_min_steps(
            train.images, train.labels, config.batch_size, config.min_steps_per_epoch
        )
        started = time.monotonic()
        fit = model.fit(
            model_input(train_images),
            train_labels,
            validation_data=(model_input(validation.images), validation.labels),
            epochs=config.max_epochs,
            batch_size=config.batch_size,
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    monitor="val_accuracy",
                    mode="max",
                    patience=config.early_stopping_patience,
                    restore_best_weights=True,
                ),
                learning_rate_callback(config),
                EpochLogger(),
            ],
        )
        train_seconds = time.monotonic() - started
        history = [
            {
                "epoch": epoch + 1,
                **{name: float(fit.history[name][epoch]) for name in EPOCH_METRICS},
            }
            for epoch in range(len(fit.history["loss"]))
        ]
        keras_path = model_path(params, family)
        with atomic_path(keras_path) as temporary:
            model.save(temporary)
        import pandas as pd

        write_text(history_path(params, family), pd.DataFrame(history).to_csv(index=False))
        curve_path = Path(params.paths.reports_dir) / family / "learning_curve.png"
        plot_learning_curve(history, family, curve_path)
        best_validation = max(entry["val_accuracy"] for entry in history)
        tracking.log_metrics(
            {
                "train_seconds": train_seconds,
                "epochs_trained": len(history),
                "best_val_accuracy": best_validation,
            }
        )
        tracking.log_artifacts([curve_path, history_path(params, family)], "training")
        tracking.describe_run(
            f"{family}: {len(history)} epochs in {train_seconds:.0f} s, best validation "
            f"accuracy {best_validation:.2%}"
        )
        logged = tracking.log_and_register_model(
            keras_path,
            params.mlflow.registered_model_name,
            {"family": family, "run_id": run_id, "val_accuracy": f"{best_validation:.4f}", **tags},
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
