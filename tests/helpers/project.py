"""A tiny project: fake Kaggle-format digits, data.dvc, and params with tiny budgets."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from digit_recognizer.data.dvc_files import directory_md5
from digit_recognizer.data.kaggle_csv import IMAGE_SIDE, DigitTable, write_digits_csv

REPOSITORY = Path(__file__).resolve().parents[2]


def synthetic_digits(per_class: int, seed: int, *, with_labels: bool = True) -> DigitTable:
    """Learnable fake digits: each class is a bright bar at its own position, plus noise."""
    generator = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
    generator.shuffle(labels)
    images = generator.integers(0, 40, size=(len(labels), IMAGE_SIDE, IMAGE_SIDE))
    for index, label in enumerate(labels):
        row = 2 + int(label) * 2 + int(generator.integers(0, 2))
        images[index, row : row + 2, 4:24] = 255
    flat = images.reshape(len(labels), -1).astype(np.uint8)
    return DigitTable(images=flat, labels=labels if with_labels else None)


def write_tiny_data(data_dir: Path, per_class: int = 12, seed: int = 0) -> None:
    write_digits_csv(data_dir / "train.csv", synthetic_digits(per_class, seed))
    write_digits_csv(data_dir / "test.csv", synthetic_digits(max(2, per_class // 3), seed + 1))


def track_data(root: Path) -> None:
    """data.dvc as `dvc add data` writes it (its md5 is what runs compare data/ against)."""
    md5 = directory_md5(root / "data")
    (root / "data.dvc").write_text(f"outs:\n- md5: {md5}\n  path: data\n")


# The stages whose outputs every model is trained and scored on.
DATA_STAGES = ("prepare", "split-feedback", "robustness")


def run_data_stages() -> None:
    """The data stages in the working directory, in process."""
    from digit_recognizer.cli import main

    for stage in DATA_STAGES:
        assert main([stage]) == 0, stage


def copy_data_stage_outputs(template: Path, folder: Path) -> None:
    """A project that ran the data stages copied over a tiny project made like it, as if that
    had run them (their own store and artifacts stay behind)."""
    shutil.copytree(
        template, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.db", "mlruns")
    )


def write_tiny_project(folder: Path) -> None:
    """Tiny data tracked by data.dvc, tiny params and dvc.yaml in `folder`."""
    write_tiny_data(folder / "data")
    track_data(folder)
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    shutil.copy(REPOSITORY / "dvc.yaml", folder / "dvc.yaml")


def tiny_params() -> dict:
    """The repository's params.yaml with budgets shrunk for tests."""
    params = yaml.safe_load((REPOSITORY / "params.yaml").read_text())
    params["prepare"]["eda_samples_per_class"] = 2
    params["prepare"]["validation_fraction"] = 0.25
    params["robustness"]["images_per_kind"] = 5
    return shrink_to_tiny_budgets(params)


def shrink_to_tiny_budgets(params: dict) -> dict:
    """Search and training budgets that finish in seconds on tiny data."""
    for family in ("ann", "cnn"):
        params["tune"][family]["budget"].update(
            max_epochs=2, max_trials=2, search_fraction=1.0, min_steps_per_epoch=10
        )
        params["train"][family].update(max_epochs=2, min_steps_per_epoch=10)
    params["tune"]["ann"]["space"].update(units=[16, 32], hidden_layers=[1], batch_norm=[False])
    params["tune"]["cnn"]["space"].update(conv_blocks=[2], filters=[4, 8], dropout=[0.25])
    params["baselines"].update(
        knn={"pca_components": 10, "neighbors": [3]},
        decision_tree={"max_depth": [5]},
        random_forest={"n_estimators": [5], "max_depth": [5]},
        logistic_regression={"inverse_regularization": [1.0], "max_iter": 50},
    )
    # gates a tiny model on tiny data can pass; the tests of the gates set their own
    params["promote"].update(
        min_evaluation_accuracy=0.3,
        min_class_recall=0.0,
        max_latency_ms=1000.0,
        min_robust_accuracy=0.0,
        max_robust_accuracy_drop=1.0,
    )
    # one thread per stage and one worker per server: the suite runs two tests side by side
    # on two cores (tiny data gains nothing from a second thread; measured 7 % faster per
    # repro this way); the tests of threads or of two workers set their own
    params["compute"]["threads"] = 1
    params["serve"]["workers"] = params["server"]["workers"] = 1
    params["evaluate"]["latency_repeats"] = 3
    params["evaluate"]["gallery_size"] = 4
    return params


@dataclass(frozen=True)
class ReproducedProject:
    folder: Path
    environment: dict[str, str]
    output: str  # what the first `dvc repro` printed
