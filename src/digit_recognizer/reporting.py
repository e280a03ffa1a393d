"""Tables and charts that summarise several runs (search trials, model comparisons)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from digit_recognizer.files import write_text
from digit_recognizer.plotting import save_figure

if TYPE_CHECKING:
    import pandas as pd

    from digit_recognizer.tuning import TrialRecord


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
        sns.stripplot(data=frame, x=frame[name].astype(str), y="score", ax=axis, size=7)
        axis.set_title(f"score by {name}")
        axis.set_xlabel(name)
    save_figure(figure, path)


COMPARISON_COLUMNS = (
    "test_accuracy",
    "test_macro_f1",
    "train_seconds",
    "latency_ms_batch1",
    "latency_ms_batch256",
    "parameters",
    "model_size_bytes",
)


def comparison_frame(metrics_files: dict[str, Path]) -> pd.DataFrame:
    """One row per model from its metrics JSON, best test accuracy first."""
    import json

    import pandas as pd

    rows = []
    for model, path in metrics_files.items():
        metrics = json.loads(path.read_text())
        rows.append(
            {"model": model, **{column: metrics.get(column) for column in COMPARISON_COLUMNS}}
        )
    return pd.DataFrame(rows).sort_values("test_accuracy", ascending=False, ignore_index=True)


def write_comparison(metrics_files: dict[str, Path], folder: Path) -> list[Path]:
    """comparison.csv, comparison.md and comparison.png from the evaluations' metrics."""
    import seaborn as sns
    from matplotlib.figure import Figure

    frame = comparison_frame(metrics_files)
    csv_path, markdown_path, chart_path = (
        folder / f"comparison.{suffix}" for suffix in ("csv", "md", "png")
    )
    write_text(csv_path, frame.to_csv(index=False))
    lines = [
        "| model | test accuracy | macro-F1 | train s | ms/image (batch 1) | "
        "ms/image (batch 256) | parameters | size (KB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in frame.itertuples(index=False):
        lines.append(
            f"| {row.model} | {row.test_accuracy:.2%} | {row.test_macro_f1:.4f} | "
            f"{row.train_seconds:.0f} | {row.latency_ms_batch1:.3f} | "
            f"{row.latency_ms_batch256:.4f} | {int(row.parameters):,} | "
            f"{row.model_size_bytes / 1024:.0f} |"
        )
    write_text(markdown_path, "\n".join(lines) + "\n")
    figure = Figure(figsize=(11, 3.8))
    accuracy_axes, time_axes, latency_axes = figure.subplots(1, 3)
    sns.barplot(data=frame, x="model", y="test_accuracy", ax=accuracy_axes)
    accuracy_axes.set_ylim(max(0.0, float(frame["test_accuracy"].min()) - 0.02), 1.0)
    sns.barplot(data=frame, x="model", y="train_seconds", ax=time_axes)
    sns.barplot(data=frame, x="model", y="latency_ms_batch1", ax=latency_axes)
    for axes in (accuracy_axes, time_axes, latency_axes):
        axes.tick_params(axis="x", rotation=30)
    figure.suptitle("Models compared on the test set")
    save_figure(figure, chart_path)
    return [csv_path, markdown_path, chart_path]
