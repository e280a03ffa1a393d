"""Cosine learning-rate annealing, shared by search trials and final training.

The rate is set before every batch from the absolute epoch position, so a Hyperband trial that
resumes at ``initial_epoch`` continues the same curve instead of restarting it.
"""

from __future__ import annotations

import math
from typing import Any

WARMUP_START_FRACTION = 0.1  # warm-up climbs linearly from a tenth of the peak rate


def cosine_learning_rate(
    peak: float, progress: float, total_epochs: int, warmup_epochs: float = 0.0
) -> float:
    """The rate after ``progress`` epochs (fractional) of ``total_epochs``: a linear warm-up to
    ``peak``, then half a cosine down to zero at the last step."""
    if progress < warmup_epochs:
        return peak * (
            WARMUP_START_FRACTION + (1 - WARMUP_START_FRACTION) * progress / warmup_epochs
        )
    decay_epochs = total_epochs - warmup_epochs
    fraction = min((progress - warmup_epochs) / decay_epochs, 1.0) if decay_epochs > 0 else 1.0
    return 0.5 * peak * (1.0 + math.cos(math.pi * fraction))


def cosine_schedule(total_epochs: int, warmup_epochs: float = 0.0) -> Any:
    """A Keras callback annealing the optimizer's rate; its peak is the rate the model was
    compiled with (the tuned ``learning_rate``), read when training begins."""
    import keras

    class CosineSchedule(keras.callbacks.Callback):
        peak = 0.0
        epoch = 0

        def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
            self.peak = float(self.model.optimizer.learning_rate.numpy())

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None:
            steps = self.params.get("steps") or 1
            self.model.optimizer.learning_rate.assign(
                cosine_learning_rate(
                    self.peak, self.epoch + batch / steps, total_epochs, warmup_epochs
                )
            )

    return CosineSchedule()
