"""EDA plots for the prepare stage (seaborn/matplotlib, written atomically as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digit_recognizer.data.kaggle_csv import DIGITS, IMAGE_SIDE
from digit_recognizer.data.splits import Splits
from digit_recognizer.plotting import save_figure

EDA_FILES = (
    "class_distribution.png",
    "samples_per_class.png",
    "mean_image_per_class.png",
    "pixel_intensity_histogram.png",
)


def plot_class_distribution(splits: Splits, path: Path) -> None:
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    frame = pd.DataFrame(
        [
            (name, int(label))
            for name, table in splits.items()
            if table.labels is not None
            for label in table.labels
        ],
        columns=["split", "digit"],
    )
    figure = Figure(figsize=(9, 4))
    axes = figure.subplots()
    sns.countplot(data=frame, x="digit", hue="split", ax=axes)
    axes.set_title("Class distribution per split")
    # beside the bars: inside, it covered the tallest ones
    axes.legend(title="split", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    save_figure(figure, path)


def plot_samples_per_class(splits: Splits, samples: int, seed: int, path: Path) -> None:
    from matplotlib.figure import Figure

    train = splits.train
    assert train.labels is not None
    generator = np.random.default_rng(seed)
    figure = Figure(figsize=(samples * 0.8, 10 * 0.8))
    grid = figure.subplots(10, samples, squeeze=False)
    for digit in DIGITS:
        candidates = np.flatnonzero(train.labels == digit)
        chosen = generator.choice(candidates, size=min(samples, len(candidates)), replace=False)
        for column in range(samples):
            axes = grid[digit][column]
            axes.axis("off")
            if column < len(chosen):
                axes.imshow(
                    train.images[chosen[column]].reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray_r"
                )
    figure.suptitle("Random training samples, one row per digit")
    save_figure(figure, path)


def plot_mean_images(splits: Splits, path: Path) -> None:
    from matplotlib.figure import Figure

    train = splits.train
    assert train.labels is not None
    figure = Figure(figsize=(12, 2))
    for digit, axes in zip(DIGITS, figure.subplots(1, 10), strict=True):
        mean = train.images[train.labels == digit].mean(axis=0)
        axes.imshow(mean.reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="magma")
        axes.set_title(str(digit))
        axes.axis("off")
    figure.suptitle("Mean training image per digit")
    save_figure(figure, path)


def plot_pixel_histogram(splits: Splits, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4))
    axes = figure.subplots()
    for name, table in splits.items():
        counts = np.bincount(table.images.ravel(), minlength=256)
        axes.plot(np.arange(256), counts / counts.sum(), label=name)
    axes.set_yscale("log")
    axes.set_xlabel("pixel intensity (0-255)")
    axes.set_ylabel("share of pixels (log)")
    axes.set_title("Pixel intensity histogram")
    axes.legend()
    save_figure(figure, path)


def write_eda(splits: Splits, samples_per_class: int, seed: int, folder: Path) -> list[Path]:
    paths = [folder / name for name in EDA_FILES]
    plot_class_distribution(splits, paths[0])
    plot_samples_per_class(splits, samples_per_class, seed, paths[1])
    plot_mean_images(splits, paths[2])
    plot_pixel_histogram(splits, paths[3])
    return paths
