"""A network's own view of a digit: the activations that feed its last (softmax) layer, with
the probabilities, for the drift monitor's comparison of what is served with the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.models.input_pipeline import model_input

BATCH_ROWS = 512


class EmbeddingModel:
    """A saved Keras ANN or CNN, answering (embedding, probabilities) for Kaggle rows."""

    def __init__(self, keras_path: Path) -> None:
        import keras

        network = keras.models.load_model(keras_path, compile=False)
        self._both = keras.Model(network.inputs, [network.layers[-1].input, network.outputs[0]])

    def __call__(
        self, pixels: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        embeddings, probabilities = [], []
        for start in range(0, len(pixels), BATCH_ROWS):
            embedding, probability = self._both(
                model_input(pixels[start : start + BATCH_ROWS]), training=False
            )
            embeddings.append(np.asarray(embedding, dtype=np.float32))
            probabilities.append(np.asarray(probability, dtype=np.float32))
        return np.concatenate(embeddings), np.concatenate(probabilities)
