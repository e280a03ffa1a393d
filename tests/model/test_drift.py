"""The drift monitor's measures: quiet on windows drawn like the reference, loud on a window
in which 30 % of the pictures come from another population (inverted, or another digit mix).

The "model" is a fixed template matcher over learnable fake digits, and its embedding a fixed
random projection, so what is tested is the comparison itself, window by window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import Params
from digit_recognizer.data.robustness import read_as_picture
from digit_recognizer.monitoring.commands import (
    Reference,
    compare,
    drawn_as_pictures,
    reference_as_served,
)
from digit_recognizer.monitoring.drift import feedback_accuracy
from digit_recognizer.monitoring.log import LoggedWindow
from tests.helpers.project import synthetic_digits

PARAMS = Params()
TEMPLATES_FROM = synthetic_digits(200, seed=100)
TEMPLATES = np.stack(
    [TEMPLATES_FROM.images[TEMPLATES_FROM.labels == digit].mean(axis=0) for digit in range(10)]
)
PROJECTION = np.random.default_rng(7).normal(size=(784, 32)).astype(np.float32) / 28


def probabilities(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    scores = (pixels.astype(np.float32) / 255) @ (TEMPLATES.T / 255) / 20
    scores -= scores.max(axis=1, keepdims=True)
    exponent = np.exp(scores * 8)
    return (exponent / exponent.sum(axis=1, keepdims=True)).astype(np.float32)


def embed(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return np.tanh((pixels.astype(np.float32) / 255) @ PROJECTION)


def reference() -> Reference:
    pixels = synthetic_digits(500, seed=1).images
    return Reference("1", pixels, embed(pixels), probabilities(pixels))


def window_of(
    pixels: npt.NDArray[np.uint8],
    corrected: dict[str, int] | None = None,
    kind: str = "json",
) -> LoggedWindow:
    answered = probabilities(pixels)
    count = len(pixels)
    return LoggedWindow(
        prediction_ids=[f"id{index}" for index in range(count)],
        created_at=np.arange(count, dtype=np.float64),
        versions=["1"] * count,
        input_kinds=[kind] * count,
        labels=answered.argmax(axis=1).astype(np.int64),
        probabilities=answered,
        latency_ms=np.full(count, 2.0),
        pixels=pixels,
        pixel_rows=np.arange(count),
        corrected=corrected or {},
    )


def test_windows_drawn_like_the_reference_raise_no_alert() -> None:
    # given the reference and ten windows of 500 new digits from the same population
    base = reference()
    for seed in range(10):
        pixels = synthetic_digits(50, seed=200 + seed).images
        # when each window is compared
        report, _ = compare(window_of(pixels), base, embed, PARAMS)
        # then no measure alerts
        assert report.judged
        assert not report.alerts, f"window {seed}: {report.summary()} {report.measures}"


def test_pictures_are_compared_with_the_reference_drawn_as_pictures(tmp_path: Path) -> None:
    # given a window of 300 digits that came as pictures (the reader centred and resampled them)
    pictures = np.stack([read_as_picture(row) for row in synthetic_digits(30, seed=400).images])
    window = window_of(pictures, kind="picture")
    rows = synthetic_digits(30, seed=1).images

    def network(
        pixels: npt.NDArray[np.uint8],
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return embed(pixels), probabilities(pixels)

    # when it is compared with the reference as rows, and through the window's doors
    as_pictures = drawn_as_pictures(rows, tmp_path)
    as_rows = reference_as_served(network, rows, as_pictures, 0.0, "1", seed=0)
    as_served = reference_as_served(network, rows, as_pictures, window.picture_share(), "1", 0)
    report_as_rows, _ = compare(window, as_rows, embed, PARAMS)
    report_as_served, _ = compare(window, as_served, embed, PARAMS)
    # then the reader's own way of drawing is an alert only against the rows
    assert window.picture_share() == 1.0
    assert "pixel_shift" in {measure.name for measure in report_as_rows.alerts}
    assert not report_as_served.alerts, report_as_served.summary()
    # and the drawn reference is kept, and read back the same, for the next run
    assert np.array_equal(drawn_as_pictures(rows, tmp_path), as_pictures)
    assert len(list(tmp_path.glob("reference-as-pictures-*.npy"))) == 1


def test_a_window_with_30_percent_inverted_pictures_is_flagged() -> None:
    # given a window of 500 in which 150 pictures are inverted photos (white paper, dark ink)
    pixels = synthetic_digits(50, seed=300).images.copy()
    pixels[:150] = 255 - pixels[:150]
    # when compared
    report, distributions = compare(window_of(pixels), reference(), embed, PARAMS)
    # then the pixels and the embedding both say the inputs moved, and the exit would be 3
    alerted = {measure.name for measure in report.alerts}
    assert {"pixel_shift", "embedding_shift"} <= alerted, report.measures
    assert "ALERT" in report.summary()
    assert distributions.window_ink.mean() > distributions.reference_ink.mean() + 40


def test_a_window_flooded_with_one_digit_is_flagged_on_the_class_mix() -> None:
    # given a window in which a third of the pictures are sevens from other writers
    digits = synthetic_digits(50, seed=400)
    sevens = synthetic_digits(30, seed=401)
    pixels = np.concatenate(
        [digits.images[:330], sevens.images[sevens.labels == 7].repeat(6, axis=0)[:170]]
    )
    report, _ = compare(window_of(pixels), reference(), embed, PARAMS)
    assert "class_mix" in {measure.name for measure in report.alerts}, report.measures


def test_corrected_answers_give_an_accuracy_with_an_interval() -> None:
    # given 100 corrected answers, 80 of which people confirmed
    answered = np.zeros(100, dtype=np.int64)
    corrected = np.where(np.arange(100) < 80, 0, 1)
    result = feedback_accuracy(answered, corrected)
    assert (result.corrected, result.right) == (100, 80)
    assert result.low is not None and result.high is not None
    assert 0.70 < result.low < 0.8 < result.high < 0.88
    # and a window of them alerts when even the interval's top is under the floor (0.9)
    pixels = synthetic_digits(20, seed=500).images
    window = window_of(pixels)
    wrong = {
        key: (int(label) + 1) % 10
        for key, label in zip(window.prediction_ids, window.labels, strict=True)
    }
    report, _ = compare(window_of(pixels, wrong), reference(), embed, PARAMS)
    assert [measure.name for measure in report.alerts] == ["feedback_accuracy"]
    assert "0.0% of 200 corrected" in report.summary()


def test_too_small_a_window_is_not_judged() -> None:
    report, _ = compare(window_of(synthetic_digits(2, seed=600).images), reference(), embed, PARAMS)
    assert not report.judged and not report.alerts
    assert "too few records to judge drift" in report.summary()
