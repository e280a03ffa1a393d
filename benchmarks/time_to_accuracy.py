"""Training throughput and time to 99.0 % test accuracy: our default CNN against the Keras
``mnist_convnet`` example, side by side on the same data and machine.

    python -m benchmarks.time_to_accuracy            # after `dvc repro` (uses prepared/)
    python -m benchmarks.time_to_accuracy --max-epochs 2   # our recipe on a 2-epoch schedule

Our CNN is what `digits train cnn` builds: hyperparameters/cnn.json, the `train.cnn` settings
and the precision `compute.precision` picks on this CPU. The Keras example is its published
recipe (keras.io/examples/vision/mnist_convnet: conv 32 -> pool -> conv 64 -> pool -> dropout
0.5 -> softmax, Adam, batch 128, 15 epochs, pixels / 255). Both train on the prepared train
split (54,000 images) and are scored on the official test set after every epoch. That score
is a stopwatch, never a choice: nothing is tuned on it.

The two models train one epoch in turn (ours, theirs, ours, ...), so a slow minute on a shared
machine hits both. Seconds are training only: the per-epoch test scoring is not counted, and
neither runs a validation pass. A model stops once it has reached the target. Writes
reports/benchmarks/time_to_accuracy.json (a `--max-epochs` run too: the last run stands).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_report
from digit_recognizer.config import load_params
from digit_recognizer.console import import_tensorflow_quietly
from digit_recognizer.data.splits import load_split
from digit_recognizer.models.architectures import build_model, hyperparameters_from
from digit_recognizer.models.input_pipeline import (
    model_input,
    steps_per_epoch,
    training_batches,
)
from digit_recognizer.models.record import load_best_hyperparameters
from digit_recognizer.models.training import schedule_callbacks, training_augmentation
from digit_recognizer.runtime.cpu import cpu_flags, cpu_model
from digit_recognizer.runtime.precision import choose_precision, use_precision

KERAS_EXAMPLE_EPOCHS = 15
KERAS_EXAMPLE_BATCH = 128


@dataclass
class Contender:
    """One model trained an epoch at a time; ``fit_epoch`` trains epoch ``epoch`` (0-based)."""

    name: str
    model: Any
    fit_epoch: Any
    max_epochs: int
    images_per_epoch: int
    train_seconds: float = 0.0
    accuracies: list[float] = field(default_factory=list)
    seconds_to_target: float | None = None


def keras_example(train_images: np.ndarray, train_labels: np.ndarray) -> Contender:
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    scaled = model_input(train_images) / 255.0

    def fit_epoch(epoch: int) -> None:
        model.fit(
            scaled,
            train_labels,
            batch_size=KERAS_EXAMPLE_BATCH,
            initial_epoch=epoch,
            epochs=epoch + 1,
            verbose=0,
        )

    return Contender(
        "keras mnist_convnet", model, fit_epoch, KERAS_EXAMPLE_EPOCHS, len(train_images)
    )


def our_cnn(
    params_path: Path, train_images: np.ndarray, train_labels: np.ndarray, max_epochs: int | None
) -> tuple[Contender, str]:
    params = load_params(params_path)
    config = params.train.cnn
    name = "digit-recognizer CNN"
    if max_epochs is not None:
        # the same recipe with its warm-up and annealing squeezed into max_epochs
        config = config.model_copy(update={"max_epochs": max_epochs})
        name += f" ({max_epochs}-epoch schedule)"
    precision = choose_precision(params.compute.precision, cpu_flags())
    use_precision(precision)
    hyperparameters = load_best_hyperparameters(params.paths, "cnn")
    model = build_model(
        hyperparameters_from("cnn", hyperparameters), label_smoothing=config.label_smoothing
    )
    augmentation = training_augmentation(config)
    steps = steps_per_epoch(len(train_images), config.batch_size, config.min_steps_per_epoch)
    schedule = schedule_callbacks(config)

    def fit_epoch(epoch: int) -> None:
        # a fresh seeded stream per epoch: each call to fit starts its dataset afresh
        batches = training_batches(
            train_images, train_labels, config.batch_size, params.seed + epoch, augmentation
        )
        model.fit(
            batches,
            steps_per_epoch=steps,
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,
            callbacks=schedule,
            verbose=0,
        )

    contender = Contender(
        name,
        model,
        fit_epoch,
        config.max_epochs,
        steps * config.batch_size,
    )
    return contender, f"{precision.policy} ({precision.reason})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument(
        "--max-epochs",
        type=int,
        help="train our CNN on a schedule of this many epochs (default: train.cnn.max_epochs)",
    )
    arguments = parser.parse_args()

    import_tensorflow_quietly()
    import keras

    params = load_params(arguments.params)
    prepared = Path(params.paths.prepared_dir)
    train, test = load_split(prepared, "train"), load_split(prepared, "test")
    if train.labels is None or test.labels is None:
        raise SystemExit(f"{prepared}/test.npz has no labels: the benchmark needs MNIST's test set")
    keras.utils.set_random_seed(params.seed)
    ours, precision = our_cnn(arguments.params, train.images, train.labels, arguments.max_epochs)
    contenders = [ours, keras_example(train.images, train.labels)]
    test_images = model_input(test.images)
    print(f"CPU: {cpu_model()}; our precision: {precision}", flush=True)

    for epoch in range(max(contender.max_epochs for contender in contenders)):
        for contender in contenders:
            if epoch >= contender.max_epochs or contender.seconds_to_target is not None:
                continue
            started = time.perf_counter()
            contender.fit_epoch(epoch)
            contender.train_seconds += time.perf_counter() - started
            scale = 255.0 if contender is not ours else 1.0
            predictions = contender.model.predict(test_images / scale, batch_size=1000, verbose=0)
            accuracy = float(np.mean(predictions.argmax(axis=1) == test.labels))
            contender.accuracies.append(accuracy)
            if accuracy >= arguments.target:
                contender.seconds_to_target = contender.train_seconds
            print(
                f"{contender.name}: epoch {epoch + 1} test {accuracy:.2%} "
                f"after {contender.train_seconds:.0f} s of training",
                flush=True,
            )

    results = []
    for contender in contenders:
        epochs = len(contender.accuracies)
        result = {
            "model": contender.name,
            "images_per_second": round(
                epochs * contender.images_per_epoch / contender.train_seconds
            ),
            "epochs": epochs,
            "train_seconds": round(contender.train_seconds, 1),
            "seconds_to_target": None
            if contender.seconds_to_target is None
            else round(contender.seconds_to_target, 1),
            "test_accuracy_per_epoch": [round(value, 4) for value in contender.accuracies],
        }
        results.append(result)
        reached = (
            f"{result['seconds_to_target']} s to {arguments.target:.1%} (epoch {epochs})"
            if contender.seconds_to_target is not None
            else f"never reached {arguments.target:.1%} in {epochs} epochs"
        )
        print(f"{contender.name}: {result['images_per_second']} images/s, {reached}")
    ours_time, theirs_time = (contender.seconds_to_target for contender in contenders)
    if ours_time and theirs_time:
        print(f"speed-up to {arguments.target:.1%}: {theirs_time / ours_time:.1f}x")
    summary = {"precision": precision, "target": arguments.target, "results": results}
    print(f"written {write_report(Path.cwd(), 'time_to_accuracy', summary)}")


if __name__ == "__main__":
    main()
