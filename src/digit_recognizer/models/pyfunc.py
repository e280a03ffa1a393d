"""The logged MLflow model: it speaks the data's own format.

Input: Kaggle rows, 784 integer pixels 0-255 (a DataFrame with ``pixel0..pixel783`` columns,
or an (n, 784) array). Output: a DataFrame with the predicted ``label`` and ``prob_0..prob_9``.
Bad input raises ``MlflowException(INVALID_PARAMETER_VALUE)``, which the scoring server turns
into HTTP 400 with the message, never a 500.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import numpy.typing as npt
import pandas as pd

from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS, PIXEL_COUNT
from digit_recognizer.models.architectures import CLASS_COUNT
from digit_recognizer.models.fitting import model_input

DIRECT_CALL_ROWS = 256
PROBABILITY_COLUMNS = tuple(f"prob_{digit}" for digit in range(CLASS_COUNT))


def pixels_from(rows: Any) -> npt.NDArray[np.uint8]:
    """Validate Kaggle rows and return them as (n, 784) uint8; ValueError names the problem."""
    if isinstance(rows, pd.DataFrame):
        missing = [column for column in PIXEL_COLUMNS if column not in rows.columns]
        if missing:
            raise ValueError(
                f"expected columns pixel0..pixel783; missing {missing[:3]}"
                f"{' and more' if len(missing) > 3 else ''}"
            )
        rows = rows[list(PIXEL_COLUMNS)]
    values = np.asarray(rows)
    if values.ndim == 1 and values.size == PIXEL_COUNT:
        values = values.reshape(1, PIXEL_COUNT)
    if values.ndim != 2 or values.shape[1] != PIXEL_COUNT:
        raise ValueError(f"expected rows of {PIXEL_COUNT} pixels, got shape {values.shape}")
    if values.shape[0] == 0:
        raise ValueError("no rows to predict")
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError("pixels must be integers 0-255, got non-numeric values")
    if not np.isfinite(values).all() or not np.array_equal(values, np.round(values)):
        raise ValueError("pixels must be integers 0-255")
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"pixels must be within 0-255, got {values.min()}..{values.max()}")
    return values.astype(np.uint8)


def predict_frame(model: Any, pixels: npt.NDArray[np.uint8]) -> pd.DataFrame:
    """Labels and class probabilities for validated pixels (one code path for all callers)."""
    images = model_input(pixels)
    # A direct call avoids predict()'s ~50 ms set-up per call, which would dominate small
    # requests; predict() batches large inputs so memory stays bounded.
    probabilities = np.asarray(
        model(images, training=False)
        if len(images) <= DIRECT_CALL_ROWS
        else model.predict(images, batch_size=DIRECT_CALL_ROWS, verbose=0)
    )
    frame = pd.DataFrame(probabilities.astype(np.float64), columns=list(PROBABILITY_COLUMNS))
    frame.insert(0, "label", probabilities.argmax(axis=1).astype(np.int64))
    return frame


class DigitClassifier(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """A Keras ANN or CNN behind the Kaggle-row interface."""

    def load_context(self, context: Any) -> None:
        import keras

        self.model = keras.models.load_model(context.artifacts["keras_model"], compile=False)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            pixels = pixels_from(model_input)
        except ValueError as error:
            raise MlflowException(f"invalid input: {error}", INVALID_PARAMETER_VALUE) from None
        return predict_frame(self.model, pixels)


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("long", name) for name in PIXEL_COLUMNS]),
        outputs=Schema(
            [ColSpec("long", "label"), *[ColSpec("double", name) for name in PROBABILITY_COLUMNS]]
        ),
    )
