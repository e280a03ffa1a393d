"""Every model compared: the report stage's table, conclusion and chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from digit_recognizer.errors import UserError
from digit_recognizer.files import write_text
from digit_recognizer.plotting import save_figure

if TYPE_CHECKING:
    import pandas as pd


REFERENCE_FIGURES = (
    ("Keras ANN (reference project 1)", 0.9777),
    ("Keras CNN (reference project 1)", 0.9912),
    ("best MLP (reference project 2)", 0.9599),
)
NEURAL = ("ann", "cnn")


def comparison_frame(scores_files: dict[str, Path]) -> tuple[pd.DataFrame, str]:
    """One row per model, best first, ranked on the evaluation split (test.csv when labelled,
    else the holdout); also returns that split's name."""
    import json

    import pandas as pd

    loaded = {model: json.loads(path.read_text()) for model, path in scores_files.items()}
    splits = {metrics.get("evaluation_split", "test") for metrics in loaded.values()}
    if len(splits) != 1:
        raise UserError(
            f"reports/*/scores.json were scored on different splits ({', '.join(sorted(splits))}); "
            "rerun the evaluate and baselines stages"
        )
    split = splits.pop()
    rows = [
        {
            "model": model,
            "kind": "neural network" if model in NEURAL else "classical",
            "accuracy": metrics["evaluation_accuracy"],
            "macro_f1": metrics["evaluation_macro_f1"],
            "robust_accuracy": metrics["robust_accuracy"],
            **{
                key: metrics[key]
                for key in (
                    "train_seconds",
                    "latency_ms_batch1",
                    "latency_ms_batch256",
                    "parameters",
                    "model_size_bytes",
                )
            },
        }
        for model, metrics in loaded.items()
    ]
    frame = pd.DataFrame(rows).sort_values("accuracy", ascending=False, ignore_index=True)
    return frame, split


def conclusion(frame: pd.DataFrame) -> str:
    """One sentence on what the numbers show, written from the numbers."""
    neural = frame[frame["kind"] == "neural network"].iloc[0]
    classical = frame[frame["kind"] == "classical"].iloc[0]
    gap = (neural.accuracy - classical.accuracy) * 100
    sentence = (
        f"The best neural network ({neural.model}, {neural.accuracy:.2%}) "
        f"{'beats' if gap > 0 else 'trails'} the best classical model "
        f"({classical.model}, {classical.accuracy:.2%}) by {abs(gap):.2f} points"
    )
    by_model = frame.set_index("model")
    if {"ann", "cnn"} <= set(by_model.index):
        ann, cnn = by_model.loc["ann"], by_model.loc["cnn"]
        sentence += (
            f"; the CNN {'beats' if cnn.accuracy > ann.accuracy else 'does not beat'} "
            f"the ANN ({cnn.accuracy:.2%} vs {ann.accuracy:.2%}, "
            f"{(1 - cnn.accuracy) / max(1 - ann.accuracy, 1e-9):.2f}x the errors) at "
            f"{cnn.latency_ms_batch1 / max(ann.latency_ms_batch1, 1e-9):.1f}x the "
            f"single-image latency and "
            f"{cnn.train_seconds / max(ann.train_seconds, 1e-9):.1f}x the training time"
        )
    return sentence + "."


KIND_COLOURS = {"neural network": "#1f77b4", "classical": "#ff7f0e"}


def plot_comparison(frame: pd.DataFrame, split: str, path: Path) -> None:
    """Error rate, training time and latency per model, each on a log axis: between 0.6 % and
    1.5 % error (99.4 % vs 98.5 % accuracy) the bars differ by half their length, where a
    linear accuracy axis would show two equal bars. Horizontal bars keep model names readable;
    the one legend sits above the panels and covers nothing."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    ordered = frame.sort_values("accuracy", ascending=True)
    colours = [KIND_COLOURS[kind] for kind in ordered["kind"]]
    figure = Figure(figsize=(18, 0.5 * len(ordered) + 2.2), layout="constrained")
    error_axes, robust_axes, time_axes, latency_axes = figure.subplots(1, 4, sharey=True)
    error = ((1.0 - ordered["accuracy"]) * 100).clip(lower=0.01)  # a log axis has no zero
    error_axes.barh(ordered["model"], error, color=colours)
    for position, value in enumerate(error):
        error_axes.annotate(
            f" {value:.2f} %", (value, position), va="center", fontsize=8, color="black"
        )
    headroom = len(ordered) + 1.3  # reference labels stand above the bars, covering none
    for name, accuracy in REFERENCE_FIGURES:
        error_axes.axvline((1 - accuracy) * 100, linestyle="--", linewidth=0.8, color="gray")
        error_axes.annotate(
            name,
            ((1 - accuracy) * 100, headroom - 0.1),
            rotation=90,
            fontsize=7,
            color="gray",
            va="top",
            ha="right",
        )
    error_axes.set_ylim(-0.6, headroom)
    error_axes.set_xscale("log")
    error_axes.set_xlim(float(error.min()) / 1.5, float(error.max()) * 3)
    error_axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g} %"))
    error_axes.set_title(f"error rate on {split} (log, lower is better; dashed: references)")
    robust_error = ((1.0 - ordered["robust_accuracy"]) * 100).clip(lower=0.01)
    robust_axes.barh(ordered["model"], robust_error, color=colours)
    for position, value in enumerate(robust_error):
        robust_axes.annotate(f" {value:.1f} %", (value, position), va="center", fontsize=8)
    robust_axes.set_xscale("log")
    robust_axes.set_xlim(float(robust_error.min()) / 1.5, float(robust_error.max()) * 3)
    robust_axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g} %"))
    robust_axes.set_title("error on the robustness set (log)")
    time_axes.barh(ordered["model"], ordered["train_seconds"].clip(lower=0.1), color=colours)
    time_axes.set_xscale("log")
    time_axes.set_title("training seconds (log)")
    latency_axes.barh(ordered["model"], ordered["latency_ms_batch1"], color=colours)
    latency_axes.set_xscale("log")
    latency_axes.set_title("ms per image, batch 1 (log)")
    figure.legend(
        handles=[Patch(color=colour, label=kind) for kind, colour in KIND_COLOURS.items()],
        loc="outside upper center",
        ncols=2,
        frameon=False,
    )
    save_figure(figure, path)


def write_report(scores_files: dict[str, Path], folder: Path) -> list[Path]:
    """summary.md, comparison.csv and comparison.png from every model's scores.json."""
    frame, split = comparison_frame(scores_files)
    summary_path, csv_path, chart_path = (
        folder / "summary.md",
        folder / "comparison.csv",
        folder / "comparison.png",
    )
    write_text(csv_path, frame.to_csv(index=False))
    lines = [
        "# Model comparison",
        "",
        "Generated by `digits report` (the `report` stage) from `reports/*/scores.json`; "
        f"ranked by {split} accuracy. Times and latencies were measured on the machine that "
        "ran the pipeline.",
        "",
        f"| rank | model | kind | {split} accuracy | macro-F1 | robustness set | train s | "
        "ms/image (batch 1) | ms/image (batch 256) | parameters | size (KB) |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rank, row in enumerate(frame.to_dict("records"), start=1):
        lines.append(
            f"| {rank} | {row['model']} | {row['kind']} | {row['accuracy']:.2%} | "
            f"{row['macro_f1']:.4f} | {row['robust_accuracy']:.2%} | {row['train_seconds']:.0f} | "
            f"{row['latency_ms_batch1']:.3f} | {row['latency_ms_batch256']:.4f} | "
            f"{int(row['parameters']):,} | {row['model_size_bytes'] / 1024:,.0f} |"
        )
    lines += ["", "Published figures of the two reference projects, for reference:", ""]
    lines += [f"- {name}: {accuracy:.2%}" for name, accuracy in REFERENCE_FIGURES]
    lines += [
        "",
        "The robustness set is the same evaluation digits drawn as pictures people hand over "
        "(off-centre on a larger canvas, rotated, thick and thin strokes, dark ink on noisy "
        "paper, inverted) and read back the MNIST way, as `digits predict` and `digits serve` "
        "read pictures; each model's `scores.json` has the accuracy per kind.",
    ]
    lines += ["", conclusion(frame), "", "![comparison](comparison.png)", ""]
    write_text(summary_path, "\n".join(lines))

    plot_comparison(frame, split, chart_path)
    return [summary_path, csv_path, chart_path]
