"""What ``digits monitor`` found, as one line, a chart (PNG) and a page (HTML)."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer.files import write_text
from digit_recognizer.monitoring.drift import CLASS_COUNT, FeedbackAccuracy, Measure
from digit_recognizer.plotting import save_figure


@dataclass(frozen=True)
class Traffic:
    """Volume and speed of the window."""

    records: int
    first: float | None  # seconds since the epoch
    last: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    versions: dict[str, int]


@dataclass(frozen=True)
class MonitorReport:
    champion: str
    traffic: Traffic
    measures: list[Measure]
    feedback: FeedbackAccuracy
    judged: bool  # False: too few records to judge drift

    @property
    def alerts(self) -> list[Measure]:
        return [measure for measure in self.measures if measure.alert]

    def metrics(self) -> dict[str, float]:
        """The numbers logged to MLflow, one name each, so the UI charts them over time."""
        values: dict[str, float] = {"records": float(self.traffic.records)}
        if self.traffic.latency_p50_ms is not None:
            values["latency_p50_ms"] = self.traffic.latency_p50_ms
            values["latency_p95_ms"] = self.traffic.latency_p95_ms or 0.0
        for measure in self.measures:
            if not math.isnan(measure.value):
                values[measure.name] = measure.value
            if measure.p_value is not None:
                values[f"{measure.name}_p_value"] = measure.p_value
        values["corrected"] = float(self.feedback.corrected)
        values["alerts"] = float(len(self.alerts))
        return values

    def summary(self) -> str:
        if not self.judged:
            verdict = "too few records to judge drift"
        elif self.alerts:
            verdict = "ALERT " + ", ".join(
                f"{measure.name} {measure.value:.3f} > {measure.threshold:g}"
                if measure.name != "feedback_accuracy"
                else f"{measure.name} {measure.value:.1%} < {measure.threshold:.0%}"
                for measure in self.alerts
            )
        else:
            verdict = "no drift"
        accuracy = (
            f"{self.feedback.accuracy:.1%} of {self.feedback.corrected} corrected"
            if self.feedback.accuracy is not None
            else "no corrections"
        )
        return (
            f"monitor: {self.traffic.records} answers, champion v{self.champion}: {verdict}; "
            f"{accuracy}"
        )


@dataclass(frozen=True)
class Distributions:
    """What the chart draws, window against reference."""

    reference_labels: npt.NDArray[np.int64]
    window_labels: npt.NDArray[np.int64]
    reference_confidence: npt.NDArray[np.float32]
    window_confidence: npt.NDArray[np.float32]
    reference_ink: npt.NDArray[np.float64]  # mean pixel value per image
    window_ink: npt.NDArray[np.float64]
    window_times: npt.NDArray[np.float64]
    window_latency_ms: npt.NDArray[np.float64]


def draw_chart(report: MonitorReport, data: Distributions, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 7))
    mix, confidence, ink, latency = figure.subplots(2, 2).ravel()
    digits = np.arange(CLASS_COUNT)
    for offset, (labels, name) in enumerate(
        ((data.reference_labels, "reference"), (data.window_labels, "window"))
    ):
        share = np.bincount(labels, minlength=CLASS_COUNT) / max(len(labels), 1)
        mix.bar(digits + (offset - 0.5) * 0.4, share, width=0.4, label=name)
    mix.set(title="answered digits", xticks=digits, ylabel="share")
    mix.legend()
    bins = np.linspace(0, 1, 21)
    confidence.hist(data.reference_confidence, bins, density=True, alpha=0.6, label="reference")
    confidence.hist(data.window_confidence, bins, density=True, alpha=0.6, label="window")
    confidence.set(title="top probability", yscale="log")
    confidence.legend()
    ink_bins = np.linspace(0, max(255.0, float(data.window_ink.max(initial=0))), 31)
    ink.hist(data.reference_ink, ink_bins, density=True, alpha=0.6, label="reference")
    ink.hist(data.window_ink, ink_bins, density=True, alpha=0.6, label="window")
    ink.set(title="mean pixel value per picture")
    ink.legend()
    if len(data.window_times):
        minutes = (data.window_times - data.window_times[0]) / 60
        latency.plot(minutes, data.window_latency_ms, ".", markersize=2)
    latency.set(title="latency per answer", xlabel="minutes into the window", ylabel="ms")
    figure.suptitle(report.summary().removeprefix("monitor: "), fontsize=10)
    save_figure(figure, path)


def write_page(report: MonitorReport, chart: Path, path: Path) -> None:
    """A self-contained page: the verdict, every measure, the chart inlined."""
    rows = "".join(
        "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            ' class="alert"' if measure.alert else "",
            html.escape(measure.name),
            "-" if math.isnan(measure.value) else f"{measure.value:.4f}",
            "-" if measure.p_value is None else f"{measure.p_value:.2e}",
            f"{measure.threshold:g}",
            html.escape(measure.detail),
        )
        for measure in report.measures
    )
    traffic = report.traffic
    versions = ", ".join(f"v{version}: {count}" for version, count in traffic.versions.items())
    latency = (
        f"{traffic.latency_p50_ms:.1f} ms median, {traffic.latency_p95_ms:.1f} ms p95"
        if traffic.latency_p50_ms is not None and traffic.latency_p95_ms is not None
        else "-"
    )
    image = base64.b64encode(chart.read_bytes()).decode("ascii")
    write_text(
        path,
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>digit-recognizer: monitor</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;max-width:60rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem}}
tr.alert{{background:#fdd}}</style></head><body>
<h1>{html.escape(report.summary())}</h1>
<p>{traffic.records} answers by {html.escape(versions or "-")}; latency {latency}.</p>
<table><tr><th>measure</th><th>value</th><th>p-value</th><th>threshold</th><th>detail</th></tr>
{rows}</table>
<p><img alt="window against reference" src="data:image/png;base64,{image}"></p>
</body></html>
""",
    )
