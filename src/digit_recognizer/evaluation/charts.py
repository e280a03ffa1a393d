"""What a model's errors look like: the confusion matrix and its most confident mistakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.data.kaggle_csv import DIGITS, IMAGE_SIDE
from digit_recognizer.plotting import save_figure


def plot_confusion(
    labels: npt.NDArray[np.uint8], predicted: npt.NDArray[np.int64], title: str, path: Path
) -> None:
    import seaborn as sns
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(labels, predicted, labels=list(DIGITS))
    figure = Figure(figsize=(7, 6))
    axes = figure.subplots()
    sns.heatmap(
        matrix,
        annot=True,
        fmt="d",
        cmap="Blues",
        cbar=False,
        ax=axes,
        norm=None,
        annot_kws={"size": 8},
    )
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    save_figure(figure, path)


def plot_confident_errors(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    probabilities: npt.NDArray[np.float64],
    count: int,
    title: str,
    path: Path,
) -> None:
    """The most confidently wrong digits: why image classification is hard, shown."""
    from matplotlib.figure import Figure

    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    ranked = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:count]
    columns = 8
    rows = max(1, -(-len(ranked) // columns))
    figure = Figure(figsize=(columns * 1.4, rows * 1.6 + 0.6))
    grid = figure.subplots(rows, columns, squeeze=False)
    for position, axes in enumerate(grid.ravel()):
        axes.axis("off")
        if position < len(ranked):
            index = ranked[position]
            axes.imshow(images[index].reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray_r")
            axes.set_title(
                f"{labels[index]}→{predicted[index]} {probabilities[index, predicted[index]]:.2f}",
                fontsize=8,
            )
    figure.suptitle(f"{title}: {len(wrong)} errors, most confident first (true→predicted p)")
    save_figure(figure, path)
