"""The training input pipeline and the precision choice: augmentation that keeps a digit a
digit, reproducible batches, bfloat16 only where the CPU has AMX, float32 models saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.models.architectures import (
    AnnHyperparameters,
    CnnHyperparameters,
    build_model,
    inference_copy,
)
from digit_recognizer.models.input_pipeline import (
    Augmentation,
    augment,
    model_input,
    steps_per_epoch,
    training_batches,
)
from digit_recognizer.runtime.cpu import cpu_flags, cpu_model
from digit_recognizer.runtime.precision import choose_precision, use_precision
from tests.helpers.project import synthetic_digits


def first_batches(seed: int, count: int, augmentation: Augmentation | None) -> list[np.ndarray]:
    data = synthetic_digits(per_class=4, seed=5)
    assert data.labels is not None
    batches = training_batches(data.images, data.labels, 8, seed, augmentation)
    return [np.asarray(images) for images, _ in batches.take(count)]


def test_no_jitter_leaves_images_unchanged() -> None:
    images = model_input(synthetic_digits(per_class=2, seed=1).images)
    still = augment(images, np.array([1, 2], np.int32), Augmentation(0.0, 0.0, 0.0))
    assert np.allclose(np.asarray(still), images, atol=1e-3)


def test_augmentation_moves_ink_but_keeps_it_on_the_image() -> None:
    images = model_input(synthetic_digits(per_class=2, seed=1).images)
    jittered = np.asarray(augment(images, np.array([1, 2], np.int32), Augmentation()))
    assert jittered.shape == images.shape
    assert not np.allclose(jittered, images), "every bound is non-zero, so images change"
    assert jittered.min() >= 0.0 and jittered.max() <= 255.0
    ink_kept = jittered.sum(axis=(1, 2, 3)) / images.sum(axis=(1, 2, 3))
    assert np.all((ink_kept > 0.7) & (ink_kept < 1.3)), ink_kept  # zoom is at most 10 %


def test_batches_repeat_with_the_seed_and_differ_between_epochs() -> None:
    # given 40 rows in batches of 8, an epoch is 5 batches
    first, again = first_batches(7, 10, Augmentation()), first_batches(7, 10, Augmentation())
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True)), "seeded"
    other_seed = first_batches(8, 1, Augmentation())
    assert not np.array_equal(first[0], other_seed[0])
    plain = first_batches(7, 10, None)
    epoch_one, epoch_two = np.concatenate(plain[:5]), np.concatenate(plain[5:])
    assert not np.array_equal(epoch_one, epoch_two), "each pass reshuffles"
    assert np.isclose(epoch_one.sum(), epoch_two.sum()), "each pass holds every row once"


def test_steps_per_epoch_covers_the_data_at_least_once() -> None:
    assert steps_per_epoch(54_000, 256, 100) == 211
    assert steps_per_epoch(10, 256, 100) == 100


@pytest.mark.parametrize(
    ("setting", "flags", "policy"),
    [
        ("auto", {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "mixed_bfloat16"),
        ("auto", {"avx512f", "avx512_bf16"}, "float32"),  # measured slower without AMX
        ("auto", set(), "float32"),
        ("float32", {"amx_bf16", "amx_tile"}, "float32"),
        ("bfloat16", set(), "mixed_bfloat16"),
    ],
)
def test_precision_follows_the_setting_and_the_cpu(
    setting: str, flags: set[str], policy: str
) -> None:
    choice = choose_precision(setting, frozenset(flags))  # type: ignore[arg-type]
    assert choice.policy == policy
    assert choice.reason, "the choice is logged with its reason"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 amx_tile\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_the_cpu_is_named_with_the_vector_extensions_it_has(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 fma\n\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 9R14 (AVX2, no AVX-512)"
    cpuinfo.write_text("model name\t: Intel Xeon\nflags\t\t: avx2 avx512f\n\n")
    assert cpu_model(cpuinfo) == "Intel Xeon (AVX-512)"


def test_a_bfloat16_model_is_saved_as_the_same_float32_classifier() -> None:
    hyperparameters = CnnHyperparameters(conv_blocks=2, filters=8, dense_units=16)
    images = model_input(synthetic_digits(per_class=2, seed=4).images)
    try:
        use_precision(choose_precision("bfloat16", frozenset()))
        mixed = build_model(hyperparameters)
        mixed_probabilities = np.asarray(mixed(images))
        copy = inference_copy(mixed, hyperparameters)
    finally:
        use_precision(choose_precision("float32", frozenset()))
    assert {weight.dtype for weight in copy.weights} == {"float32"}
    assert copy.compute_dtype == "float32"
    assert np.allclose(np.asarray(copy(images)), mixed_probabilities, atol=0.05)


def test_a_label_smoothed_model_is_saved_as_a_plain_classifier(tmp_path: Path) -> None:
    import keras

    hyperparameters = AnnHyperparameters(units=8, hidden_layers=1)
    smoothed = build_model(hyperparameters, label_smoothing=0.1)
    path = tmp_path / "model.keras"
    inference_copy(smoothed, hyperparameters).save(path)
    # compiled on load, as any Keras user would: the loss it names must be Keras' own
    loaded = keras.models.load_model(path)
    images = model_input(synthetic_digits(per_class=1, seed=5).images)
    assert np.allclose(np.asarray(loaded(images)), np.asarray(smoothed(images)), atol=1e-6)
    # and the trained network itself, smoothed loss and all, loads with plain load_model
    smoothed.save(tmp_path / "smoothed.keras")
    reloaded = keras.models.load_model(tmp_path / "smoothed.keras")
    assert np.allclose(np.asarray(reloaded(images)), np.asarray(smoothed(images)), atol=1e-6)
