"""What search trials, final training and inference share: how Kaggle rows become model
inputs, the input pipeline that feeds training (shuffling, augmentation, enough steps on small
data), and which per-epoch metrics are logged.

Augmentation lives here, in ``tf.data``, not inside the model: it runs beside the training step
instead of in it, and the saved model stays a pure classifier of Kaggle pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.models.architectures import IMAGE_SHAPE

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
BATCHES_PREFETCHED = 4
# Scoring is not training: Keras' default of 32 images per batch spends most of the
# validation pass in per-batch overhead.
VALIDATION_BATCH_SIZE = 1000


@dataclass(frozen=True)
class Augmentation:
    """Random geometric jitter of training images: each bound is the largest change drawn."""

    rotation_degrees: float = 10.0
    shift_fraction: float = 0.1  # of the image side, horizontally and vertically
    zoom_fraction: float = 0.1


def model_input(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Kaggle rows (n, 784) of 0-255 as the (n, 28, 28, 1) float images the models take."""
    return images.reshape((-1, *IMAGE_SHAPE)).astype(np.float32)


def steps_per_epoch(rows: int, batch_size: int, min_steps: int) -> int:
    """Batches per epoch: one pass over the data, but at least ``min_steps``.

    On a few hundred rows an epoch is a handful of steps: batch normalisation's moving
    statistics are still near their initial values when validation runs (a 1,400-row CNN search
    scored chance level while its batch statistics classified 90 % right), and a warm-up or
    cosine schedule has nothing to anneal. Data that already fills ``min_steps`` gets exactly
    one pass, so full-size runs are unchanged.
    """
    return max(math.ceil(rows / batch_size), min_steps)


def augment(images: Any, seed: Any, augmentation: Augmentation) -> Any:
    """Rotate, zoom and shift a batch of (n, 28, 28, 1) float images about their centre.

    One fused affine resampling per batch (bilinear, zero fill) rather than a layer per
    transform; ``seed`` (two int32) makes the draw reproducible.
    """
    import tensorflow as tf

    count = tf.shape(images)[0]
    draws = tf.random.stateless_uniform((count, 4), seed=seed, minval=-1.0, maxval=1.0)
    angle = draws[:, 0] * augmentation.rotation_degrees * math.pi / 180.0
    scale = 1.0 + draws[:, 1] * augmentation.zoom_fraction
    shift_x = draws[:, 2] * augmentation.shift_fraction * IMAGE_SHAPE[1]
    shift_y = draws[:, 3] * augmentation.shift_fraction * IMAGE_SHAPE[0]
    # The transform maps each output pixel back to the input pixel it samples.
    cosine, sine = tf.cos(angle) / scale, tf.sin(angle) / scale
    centre_x, centre_y = (IMAGE_SHAPE[1] - 1) / 2.0, (IMAGE_SHAPE[0] - 1) / 2.0
    zero = tf.zeros_like(cosine)
    transforms = tf.stack(
        [
            cosine,
            -sine,
            centre_x - cosine * centre_x + sine * centre_y - shift_x,
            sine,
            cosine,
            centre_y - sine * centre_x - cosine * centre_y - shift_y,
            zero,
            zero,
        ],
        axis=1,
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=IMAGE_SHAPE[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def training_batches(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[Any],  # integer labels, or one-hot targets for a smoothed loss
    batch_size: int,
    seed: int,
    augmentation: Augmentation | None = None,
) -> Any:
    """An endless, seeded stream of shuffled (and optionally augmented) training batches.

    Fit it with ``steps_per_epoch`` (see :func:`steps_per_epoch`): the stream reshuffles on every
    pass, and each batch's augmentation draws from ``(batch number, seed)``, so every epoch sees
    new jitter and a rerun with the same seed sees the same.
    """
    import tensorflow as tf

    batches = (
        tf.data.Dataset.from_tensor_slices((model_input(images), labels))
        .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size)
    )
    if augmentation is not None:
        batches = batches.enumerate().map(
            lambda index, batch: (
                augment(batch[0], tf.stack([tf.cast(index, tf.int32), seed]), augmentation),
                batch[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return batches.prefetch(BATCHES_PREFETCHED)
