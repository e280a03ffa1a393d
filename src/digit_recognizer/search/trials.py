"""A search's trials: a table, a chart, and whether the best beat chance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.files import write_text
from digit_recognizer.plotting import save_figure

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class TrialRecord:
    """One search trial as the tables and charts show it."""

    trial_id: str
    status: str
    score: float | None
    hyperparameters: dict[str, Any]


def trials_frame(trials: list[TrialRecord]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "trial_id": trial.trial_id,
                "status": trial.status,
                "score": trial.score,
                **trial.hyperparameters,
            }
            for trial in trials
        ]
    )


def trials_table(trials: list[TrialRecord], path: Path) -> None:
    write_text(path, trials_frame(trials).to_csv(index=False))


def plot_search(trials: list[TrialRecord], family: str, path: Path) -> None:
    """Score by trial, then score against each hyperparameter that varied."""
    import seaborn as sns
    from matplotlib.figure import Figure

    frame = trials_frame(trials).dropna(subset=["score"])
    varied = [name for name in frame.columns[3:] if frame[name].astype(str).nunique() > 1]
    figure = Figure(figsize=(4 * (1 + len(varied)), 3.6))
    axes = figure.subplots(1, 1 + len(varied), squeeze=False)[0]
    sns.barplot(data=frame, x="trial_id", y="score", ax=axes[0], color="steelblue")
    axes[0].set_title(f"{family}: validation accuracy by trial")
    axes[0].tick_params(axis="x", rotation=90)
    low = max(0.0, float(frame["score"].min()) - 0.01) if len(frame) else 0.0
    axes[0].set_ylim(low, 1.0)
    for axis, name in zip(axes[1:], varied, strict=True):
        order = [str(value) for value in sorted(frame[name].unique())]  # 2 before 3, False first
        sns.stripplot(
            data=frame, x=frame[name].astype(str), y="score", order=order, ax=axis, size=7
        )
        axis.set_title(f"score by {name}")
        axis.set_xlabel(name)
    save_figure(figure, path)


def better_than_chance(score: float, validation_labels: npt.NDArray[np.uint8]) -> float:
    """One-sided exact binomial p-value that ``score`` beats always guessing the commonest
    digit on these validation rows (small means a real signal)."""
    from scipy.stats import binomtest

    rows = len(validation_labels)
    chance = float(np.bincount(validation_labels, minlength=10).max()) / rows
    return float(binomtest(round(score * rows), rows, chance, alternative="greater").pvalue)
