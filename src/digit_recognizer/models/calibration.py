"""Calibrated probabilities: one temperature per network or ensemble, fitted on validation and
folded into the saved weights, and the expected calibration error that judges it.

Label smoothing leaves a CNN's top probability near 0.95 on digits it gets right; the page and
the API show probabilities, so they should mean what they say. Temperature scaling (Guo et al.,
2017) divides the logits by one number T chosen to minimise the validation log loss; it never
changes which digit wins. Dividing the last Dense layer's kernel and bias by T is the same as
dividing its logits, so the saved model stays a plain Keras model (no custom layer) and costs
nothing at inference. Probabilities alone suffice to fit T: softmax(log p / T) equals
softmax(z / T) for the logits z behind p.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from digit_recognizer.models.architectures import OUTPUT_LAYER

if TYPE_CHECKING:
    import keras

CALIBRATION_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)
Probabilities = npt.NDArray[np.float64]


def tempered(probabilities: Probabilities, temperature: float) -> Probabilities:
    """softmax(log p / T): the probabilities the network gives once its logits are divided."""
    logits = np.log(np.clip(probabilities, 1e-30, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exponentials = np.exp(logits)
    return np.asarray(exponentials / exponentials.sum(axis=1, keepdims=True))


def averaged(members: list[Probabilities], temperature: float) -> Probabilities:
    """An ensemble's output once each member's logits are divided by the temperature."""
    return np.mean([tempered(member, temperature) for member in members], axis=0)


def log_loss(probabilities: Probabilities, labels: npt.NDArray[np.integer]) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))


def expected_calibration_error(
    probabilities: Probabilities, labels: npt.NDArray[np.integer], bins: int = CALIBRATION_BINS
) -> float:
    """How far confidence is from accuracy: the top probability's gap to the hit rate, per
    equal-width confidence bin, weighted by the bin's share of the images."""
    confidence = probabilities.max(axis=1)
    hits = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for bin_index in range(bins):
        inside = which == bin_index
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - hits[inside].mean())
    return float(error)


def fit_temperature(members: list[Probabilities], labels: npt.NDArray[np.integer]) -> float:
    """The temperature that minimises the (averaged) members' validation log loss."""
    from scipy.optimize import minimize_scalar

    low, high = np.log(TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_temperature: log_loss(averaged(members, np.exp(log_temperature)), labels),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(found.x))


def fold_temperature(network: keras.Model, temperature: float) -> None:
    """Divide the network's output logits by ``temperature``, in its weights."""
    output = network.get_layer(OUTPUT_LAYER)
    kernel, bias = output.get_weights()
    output.set_weights([kernel / temperature, bias / temperature])


@dataclass(frozen=True)
class Calibration:
    """What temperature scaling did on the validation split."""

    temperature: float
    ece_before: float
    ece_after: float
    log_loss_before: float
    log_loss_after: float

    def metrics(self) -> dict[str, float]:
        return {
            "calibration_temperature": self.temperature,
            "validation_ece_uncalibrated": self.ece_before,
            "validation_ece_calibrated": self.ece_after,
            "validation_log_loss_uncalibrated": self.log_loss_before,
            "validation_log_loss_calibrated": self.log_loss_after,
        }


def calibrate(members: list[Probabilities], labels: npt.NDArray[np.integer]) -> Calibration:
    """Fit the temperature and measure the members' (averaged) output before and after."""
    temperature = fit_temperature(members, labels)
    before, after = averaged(members, 1.0), averaged(members, temperature)
    return Calibration(
        temperature,
        expected_calibration_error(before, labels),
        expected_calibration_error(after, labels),
        log_loss(before, labels),
        log_loss(after, labels),
    )


def plot_reliability(
    curves: dict[str, Probabilities], labels: npt.NDArray[np.integer], title: str, path: Path
) -> None:
    """Accuracy against confidence per bin for each named set of probabilities; a calibrated
    model lies on the diagonal."""
    from matplotlib.figure import Figure

    from digit_recognizer.plotting import save_figure

    figure = Figure(figsize=(5.5, 5))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=0.8, label="calibrated")
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    for name, probabilities in curves.items():
        confidence = probabilities.max(axis=1)
        hits = probabilities.argmax(axis=1) == labels
        which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, CALIBRATION_BINS - 1)
        filled = [index for index in range(CALIBRATION_BINS) if (which == index).any()]
        axes.plot(
            [confidence[which == index].mean() for index in filled],
            [hits[which == index].mean() for index in filled],
            marker="o",
            label=f"{name} (ECE {expected_calibration_error(probabilities, labels):.2%})",
        )
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    save_figure(figure, path)
