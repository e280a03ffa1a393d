"""Plain Keras builders. Both families take a (28, 28, 1) image of raw 0-255 values and
rescale inside the model, so a saved model accepts Kaggle pixels as they are. Augmentation is
not part of a model: it happens in the input pipeline (models/input_pipeline.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import keras

IMAGE_SHAPE = (28, 28, 1)
CLASS_COUNT = 10
# Keras' default (0.99) leaves the moving variance near its initial value after the ~200 steps
# of a one-epoch search trial, so short trials scored ~11 %; 0.9 settles within a few dozen.
BATCH_NORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class AnnHyperparameters:
    """A multi-layer perceptron: ``hidden_layers`` dense layers of ``units`` each."""

    hidden_layers: int = 2
    units: int = 256
    activation: str = "relu"
    dropout: float = 0.2
    batch_norm: bool = True
    learning_rate: float = 1e-3


@dataclass(frozen=True)
class CnnHyperparameters:
    """``conv_blocks`` blocks of ``convs_per_block`` convolutions (filters doubling per block)
    and a max-pool, then a dense head."""

    conv_blocks: int = 2
    convs_per_block: int = 1
    filters: int = 32
    kernel_size: int = 3
    batch_norm: bool = True
    dropout: float = 0.25
    dense_units: int = 128
    learning_rate: float = 1e-3


Hyperparameters = AnnHyperparameters | CnnHyperparameters
HYPERPARAMETER_TYPES: dict[str, type[AnnHyperparameters] | type[CnnHyperparameters]] = {
    "ann": AnnHyperparameters,
    "cnn": CnnHyperparameters,
}


def _dense_block(inputs: Any, units: int, activation: str, batch_norm: bool, dropout: float) -> Any:
    from keras import layers

    hidden = layers.Dense(units, use_bias=not batch_norm)(inputs)
    if batch_norm:
        hidden = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM)(hidden)
    hidden = layers.Activation(activation)(hidden)
    return layers.Dropout(dropout)(hidden) if dropout > 0 else hidden


def _ann_body(inputs: Any, hyperparameters: AnnHyperparameters) -> Any:
    from keras import layers

    hidden = layers.Flatten()(inputs)
    for _ in range(hyperparameters.hidden_layers):
        hidden = _dense_block(
            hidden,
            hyperparameters.units,
            hyperparameters.activation,
            hyperparameters.batch_norm,
            hyperparameters.dropout,
        )
    return hidden


def _cnn_body(inputs: Any, hyperparameters: CnnHyperparameters) -> Any:
    from keras import layers

    hidden = inputs
    for block in range(hyperparameters.conv_blocks):
        for _ in range(hyperparameters.convs_per_block):
            hidden = layers.Conv2D(
                hyperparameters.filters * 2**block,
                hyperparameters.kernel_size,
                padding="same",
                use_bias=not hyperparameters.batch_norm,
            )(hidden)
            if hyperparameters.batch_norm:
                hidden = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM)(hidden)
            hidden = layers.Activation("relu")(hidden)
        hidden = layers.MaxPooling2D()(hidden)
    hidden = layers.Flatten()(hidden)
    if hyperparameters.dropout > 0:
        hidden = layers.Dropout(hyperparameters.dropout)(hidden)
    return _dense_block(
        hidden,
        hyperparameters.dense_units,
        "relu",
        hyperparameters.batch_norm,
        hyperparameters.dropout,
    )


def training_loss(label_smoothing: float = 0.0) -> Any:
    """Cross-entropy: on integer labels when plain; above 0, Keras' own class on one-hot
    targets (:func:`training_targets`), each putting ``label_smoothing`` of its weight evenly
    on all classes. Either serialises with the model, so any Keras loads it."""
    import keras

    if label_smoothing == 0.0:
        return "sparse_categorical_crossentropy"
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def training_targets(labels: npt.NDArray[np.uint8], label_smoothing: float) -> npt.NDArray[Any]:
    """What :func:`training_loss` takes: the labels, or one-hot rows for a smoothed loss."""
    if label_smoothing == 0.0:
        return labels
    return np.eye(CLASS_COUNT, dtype=np.float32)[labels]


# The last layer of every network: its logits are what calibration divides (calibration.py).
OUTPUT_LAYER = "probabilities"


def build_model(
    hyperparameters: Hyperparameters, name: str | None = None, label_smoothing: float = 0.0
) -> keras.Model:
    """Build and compile the model that ``hyperparameters`` describe (ANN or CNN), in the
    current Keras dtype policy (see runtime/precision.py); ``name`` defaults to the family.
    The loss is :func:`training_loss`; a trained network is saved as an ``inference_copy``
    (runtime/precision.py), in float32 whatever the policy it trained in."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    hidden = layers.Rescaling(1.0 / 255.0)(inputs)
    if isinstance(hyperparameters, AnnHyperparameters):
        hidden = _ann_body(hidden, hyperparameters)
        family = "ann"
    else:
        hidden = _cnn_body(hidden, hyperparameters)
        family = "cnn"
    # float32 whatever the policy: a softmax in bfloat16 rounds small probabilities to zero
    outputs = layers.Dense(CLASS_COUNT, activation="softmax", dtype="float32", name=OUTPUT_LAYER)(
        hidden
    )
    model = keras.Model(inputs, outputs, name=name or family)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=hyperparameters.learning_rate),
        loss=training_loss(label_smoothing),
        metrics=["accuracy"],
    )
    return model


def average_of(members: list[keras.Model], name: str) -> keras.Model:
    """One model whose output is the mean of the members' probabilities (an ensemble that
    saves, loads and serves like a single network)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    outputs = layers.Average(name="probabilities")([member(inputs) for member in members])
    return keras.Model(inputs, outputs, name=name)


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """The networks an :func:`average_of` model averages; empty for a single network."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def hyperparameters_from(family: Literal["ann", "cnn"], values: dict[str, Any]) -> Hyperparameters:
    """Typed hyperparameters from a plain mapping (a tuner trial or best-hyperparameters JSON)."""
    return HYPERPARAMETER_TYPES[family](**values)


def inference_copy(model: keras.Model, hyperparameters: Hyperparameters) -> keras.Model:
    """The same trained weights in a float32 model compiled with the plain loss: what is saved,
    evaluated and served, whatever precision policy the network trained in (bfloat16 where the
    CPU has AMX), an ensemble's members included."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    copy = build_model(hyperparameters, name=model.name)
    copy.set_weights(model.get_weights())
    return copy
