"""The thin ``hp`` wrapper around the plain builders (the KerasTuner guide's pattern)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from digit_recognizer.config import Family
from digit_recognizer.models.architectures import build_model, hyperparameters_from

if TYPE_CHECKING:
    import keras_tuner


def choose_hyperparameters(
    hp: keras_tuner.HyperParameters, space: dict[str, list[Any]]
) -> dict[str, Any]:
    """Declare every search-space key as a choice and return this trial's values."""
    # Keras Tuner stores booleans as 0/1; give each value back its declared type.
    return {
        name: type(values[0])(hp.Choice(name, values, ordered=False))
        for name, values in space.items()
    }


def make_hypermodel(family: Family, space: dict[str, list[Any]]) -> keras_tuner.HyperModel:
    import keras_tuner

    class FamilyHyperModel(keras_tuner.HyperModel):
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return build_model(hyperparameters_from(family, choose_hyperparameters(hp, space)))

    return FamilyHyperModel(name=family)
