"""What search trials, final training and inference share: how Kaggle rows become model
inputs, which per-epoch metrics are logged, and how small data still gets enough steps."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from digit_recognizer.models.architectures import IMAGE_SHAPE

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def model_input(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Kaggle rows (n, 784) of 0-255 as the (n, 28, 28, 1) float images the models take."""
    return images.reshape((-1, *IMAGE_SHAPE)).astype(np.float32)


def repeat_to_min_steps(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    batch_size: int,
    min_steps: int,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Repeat a small training set so that one epoch is at least ``min_steps`` batches.

    On a few hundred rows an epoch is a handful of steps: batch normalisation's moving
    statistics are still near their initial values when validation runs (a 1,400-row CNN search
    scored chance level while its batch statistics classified 90 % right), and a warm-up or
    cosine schedule has nothing to anneal. Data that already fills ``min_steps`` is returned
    as it is, so full-size runs are unchanged.
    """
    steps = math.ceil(len(images) / batch_size)
    if steps >= min_steps:
        return images, labels
    repeats = math.ceil(min_steps * batch_size / len(images))
    return np.tile(images, (repeats, 1)), np.tile(labels, repeats)
