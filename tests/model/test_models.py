"""Model behaviour: every hypermodel builds from default hyperparameters; builders are sane."""

from __future__ import annotations

import itertools

import keras_tuner
import numpy as np
import pytest

from digit_recognizer.config import FAMILIES, parse_params
from digit_recognizer.models.architectures import (
    AnnHyperparameters,
    CnnHyperparameters,
    build_model,
    training_loss,
    training_targets,
)
from digit_recognizer.models.hypermodel import make_hypermodel
from digit_recognizer.models.input_pipeline import model_input
from digit_recognizer.models.schedule import cosine_learning_rate, cosine_schedule
from digit_recognizer.search.identity import planned_trials
from tests.helpers.project import synthetic_digits


@pytest.mark.parametrize("family", FAMILIES)
def test_every_hypermodel_builds_from_default_hyperparameters(family: str) -> None:
    space = parse_params({}).tune.family(family).space.model_dump()  # type: ignore[arg-type]
    model = make_hypermodel(family, space).build(keras_tuner.HyperParameters())  # type: ignore[arg-type]
    assert model.output_shape == (None, 10)
    assert model.input_shape == (None, 28, 28, 1)


@pytest.mark.parametrize(
    "hyperparameters",
    [
        AnnHyperparameters(hidden_layers=3, activation="gelu", batch_norm=False),
        CnnHyperparameters(conv_blocks=3, convs_per_block=2, kernel_size=5),
    ],
)
def test_models_output_probabilities_for_raw_pixels(hyperparameters: object) -> None:
    model = build_model(hyperparameters)  # type: ignore[arg-type]
    probabilities = np.asarray(model(model_input(synthetic_digits(1, 0).images)))
    assert probabilities.shape == (10, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_training_lowers_the_loss() -> None:
    data = synthetic_digits(per_class=10, seed=2)
    model = build_model(AnnHyperparameters(units=32, hidden_layers=1))
    history = model.fit(model_input(data.images), data.labels, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_label_smoothing_spreads_the_target_over_every_class() -> None:
    labels = np.array([3, 7], dtype=np.uint8)
    probabilities = np.full((2, 10), 0.02, dtype=np.float32)
    probabilities[[0, 1], labels] = 0.82
    smoothing = 0.1
    targets = np.full((2, 10), smoothing / 10)
    targets[[0, 1], labels] += 1 - smoothing
    expected = float(np.mean(-(targets * np.log(probabilities)).sum(axis=1)))
    smoothed = float(
        np.mean(training_loss(smoothing)(training_targets(labels, smoothing), probabilities))
    )
    assert smoothed == pytest.approx(expected, rel=1e-4)
    assert training_loss(0.0) == "sparse_categorical_crossentropy"
    model = build_model(AnnHyperparameters(units=8, hidden_layers=1), label_smoothing=smoothing)
    assert model.loss is not None and model.loss != "sparse_categorical_crossentropy"


def test_hyperband_trial_count_matches_keras_tuner() -> None:
    budget = parse_params({}).tune.cnn.budget
    oracle = keras_tuner.oracles.HyperbandOracle(
        objective="val_accuracy", max_epochs=budget.max_epochs, factor=budget.hyperband_factor
    )
    expected = sum(
        oracle._get_size(bracket, round_number)
        for bracket in range(oracle._get_num_brackets())
        for round_number in range(bracket + 1)
    )
    assert planned_trials("hyperband", budget) == expected
    assert planned_trials("random", budget) == budget.max_trials


def test_cosine_rate_warms_up_then_anneals_to_zero() -> None:
    peak, total = 0.01, 10
    assert cosine_learning_rate(peak, 0.0, total, warmup_epochs=1) == pytest.approx(peak / 10)
    assert cosine_learning_rate(peak, 1.0, total, warmup_epochs=1) == pytest.approx(peak)
    assert cosine_learning_rate(peak, 5.5, total, warmup_epochs=1) == pytest.approx(peak / 2)
    assert cosine_learning_rate(peak, float(total), total, warmup_epochs=1) == pytest.approx(0.0)
    annealing = [cosine_learning_rate(peak, step / 4, total, 1) for step in range(4, 41)]
    assert all(later < earlier for earlier, later in itertools.pairwise(annealing))
    assert cosine_learning_rate(peak, 0.0, total) == pytest.approx(peak)  # no warm-up


def test_cosine_schedule_continues_its_curve_when_training_resumes() -> None:
    data = synthetic_digits(per_class=8, seed=3)  # 80 rows: 5 batches of 16 per epoch

    def rate_after(fits: list[tuple[int, int]]) -> float:
        model = build_model(AnnHyperparameters(units=16, hidden_layers=1, learning_rate=1e-3))
        rate = 0.0
        for initial_epoch, epochs in fits:
            model.optimizer.learning_rate.assign(1e-3)  # a resumed trial is rebuilt at its peak
            model.fit(
                model_input(data.images),
                data.labels,
                batch_size=16,
                initial_epoch=initial_epoch,
                epochs=epochs,
                callbacks=[cosine_schedule(total_epochs=4)],
                verbose=0,
            )
            rate = float(model.optimizer.learning_rate.numpy())
        return rate

    expected = cosine_learning_rate(1e-3, 2 + 4 / 5, total_epochs=4)  # the third epoch's last batch
    assert rate_after([(0, 3)]) == pytest.approx(expected)
    assert rate_after([(0, 1), (1, 3)]) == pytest.approx(expected)
