"""The logged MLflow model: it speaks the data's own format.

Input: Kaggle rows, 784 integer pixels 0-255 (an (n, 784) array, or a DataFrame with
``pixel0..pixel783`` columns). Output: a DataFrame with the predicted ``label`` and
``prob_0..prob_9``.
Bad input raises ``MlflowException(INVALID_PARAMETER_VALUE)``, which the scoring server turns
into HTTP 400 with the message, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import numpy.typing as npt
import pandas as pd

from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS, PIXEL_COUNT, validated_pixels
from digit_recognizer.models.architectures import CLASS_COUNT, IMAGE_SHAPE
from digit_recognizer.models.input_pipeline import model_input

CHUNK_ROWS = 256
# What MLflow logs and runs for a version (models-from-code); it builds DigitClassifier.
MODEL_CODE = Path(__file__).with_name("pyfunc_code.py")
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
    return validated_pixels(rows)


ProbabilityFunction = Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float32]]


def compiled_probabilities(model: Any) -> ProbabilityFunction:
    """Class probabilities for validated pixels from one traced graph (any batch size): an
    eager Keras call costs ~19 ms for a single image, the graph about a millisecond. Large
    inputs go through in chunks, so memory stays bounded."""
    import tensorflow as tf

    graph = tf.function(
        lambda images: model(images, training=False),
        input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32)],
    )

    def probabilities(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        images = model_input(pixels)
        return np.concatenate(
            [
                np.asarray(graph(images[start : start + CHUNK_ROWS]))
                for start in range(0, len(images), CHUNK_ROWS)
            ]
        )

    return probabilities


def predict_frame(
    probabilities: ProbabilityFunction, pixels: npt.NDArray[np.uint8]
) -> pd.DataFrame:
    """Labels and class probabilities for validated pixels (one code path for all callers)."""
    values = probabilities(pixels)
    frame = pd.DataFrame(values.astype(np.float64), columns=list(PROBABILITY_COLUMNS))
    frame.insert(0, "label", values.argmax(axis=1).astype(np.int64))
    return frame


class DigitClassifier(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    """A Keras ANN or CNN behind the Kaggle-row interface."""

    def load_context(self, context: Any) -> None:
        import keras

        model = keras.models.load_model(context.artifacts["keras_model"], compile=False)
        self.probabilities = compiled_probabilities(model)

    def predict(self, context: Any, model_input: np.ndarray, params: Any = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            pixels = pixels_from(model_input)
        except ValueError as error:
            raise MlflowException(f"invalid input: {error}", INVALID_PARAMETER_VALUE) from None
        return predict_frame(self.probabilities, pixels)


def signature() -> Any:
    """One (-1, 784) integer tensor in: MLflow checks its shape and dtype once per request
    instead of casting 784 named columns one by one. JSON ``dataframe_split`` (pixel0..pixel783
    in order), ``inputs``/``instances`` arrays and Kaggle-header CSV all arrive as that tensor."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.int64), (-1, PIXEL_COUNT))]),
        outputs=Schema(
            [ColSpec("long", "label"), *[ColSpec("double", name) for name in PROBABILITY_COLUMNS]]
        ),
    )


def register_keras_model(keras_path: Path, registered_name: str, tags: dict[str, str]) -> Any:
    """Register a saved Keras model as a new version of this pyfunc (a ``LoggedModel``).
    Here rather than in tracking/: tracking importing the model code would make every stage
    that logs a run depend on it, and rerun when it changes."""
    from digit_recognizer import tracking

    return tracking.log_and_register_model(
        keras_path, registered_name, tags, MODEL_CODE, signature()
    )
