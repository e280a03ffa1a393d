"""Temperature scaling: it finds the temperature that made probabilities over- or
under-confident, folds it into the weights exactly, and never changes the winning digit."""

from __future__ import annotations

import numpy as np

from digit_recognizer.models.architectures import AnnHyperparameters, build_model
from digit_recognizer.models.calibration import (
    calibrate,
    expected_calibration_error,
    fold_temperature,
    tempered,
)
from digit_recognizer.models.input_pipeline import model_input


def calibrated_sample(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose labels are drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(count, 10))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in probabilities])
    return probabilities, labels


def test_calibrated_probabilities_have_a_small_error_and_a_temperature_near_one() -> None:
    probabilities, labels = calibrated_sample(20_000, 0)
    assert expected_calibration_error(probabilities, labels) < 0.01
    calibration = calibrate([probabilities], labels)
    assert abs(calibration.temperature - 1.0) < 0.05


def test_the_temperature_that_softened_probabilities_is_found_and_undone() -> None:
    # given calibrated probabilities made underconfident (as label smoothing does) by T = 2
    probabilities, labels = calibrated_sample(20_000, 1)
    softened = tempered(probabilities, 2.0)
    # when a temperature is fitted
    calibration = calibrate([softened], labels)
    # then it is about 1/2, and the error and log loss fall
    assert abs(calibration.temperature - 0.5) < 0.03, calibration
    assert calibration.ece_after < calibration.ece_before / 3
    assert calibration.log_loss_after < calibration.log_loss_before
    assert np.array_equal(
        tempered(softened, calibration.temperature).argmax(axis=1), softened.argmax(axis=1)
    ), "temperature never changes the winning digit"


def test_folding_the_temperature_into_the_weights_equals_dividing_the_logits() -> None:
    network = build_model(AnnHyperparameters(hidden_layers=1, units=16))
    images = model_input(np.random.default_rng(2).integers(0, 256, (32, 784), dtype=np.uint8))
    before = network.predict(images, verbose=0).astype(np.float64)
    fold_temperature(network, 0.4)
    after = network.predict(images, verbose=0).astype(np.float64)
    assert np.allclose(after, tempered(before, 0.4), atol=1e-5)
    assert np.array_equal(after.argmax(axis=1), before.argmax(axis=1))
