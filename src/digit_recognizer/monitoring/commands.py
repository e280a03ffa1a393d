"""``digits monitor`` and ``digits feedback``: the log read back against the reference."""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.data.splits import evaluation_split
from digit_recognizer.errors import UserError
from digit_recognizer.monitoring import drift
from digit_recognizer.monitoring.corrections import add_corrections_file, export_labelled
from digit_recognizer.monitoring.log import LoggedWindow, PredictionLog, log_url
from digit_recognizer.monitoring.report import (
    Distributions,
    MonitorReport,
    Traffic,
    draw_chart,
    write_page,
)
from digit_recognizer.runtime.programs import program, program_environment

# digits monitor's exit status when a threshold is crossed (cron and CI act on it)
EXIT_ALERT = 3
MONITORING_EXPERIMENT = "monitoring"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def since_timestamp(text: str, now: float) -> float:
    """``--since``: a duration back from now (``30m``, ``24h``, ``7d``) or an ISO time."""
    match = _DURATION.match(text.strip())
    if match:
        return now - float(match.group(1)) * _SECONDS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"--since {text!r}: give a duration (30m, 24h, 7d) or a time (2026-12-01T08:00)"
        ) from None
    return moment.timestamp()


def open_log(params: Params, root: Path) -> PredictionLog:
    log = PredictionLog(log_url(params.monitoring, root))
    try:
        log.create_tables()
    except Exception as error:
        from digit_recognizer.monitoring.log import redacted

        raise UserError(
            f"prediction log {redacted(log.url)}: {str(error).splitlines()[0]}"
        ) from None
    return log


def add_feedback(params: Params, root: Path, path: Path) -> int:
    return add_corrections_file(open_log(params, root), path)


def export_feedback(params: Params, root: Path, output: Path) -> int:
    return export_labelled(open_log(params, root), output)


@dataclass(frozen=True)
class Retraining:
    """What ``digits monitor --retrain`` did, in one line."""

    ran: bool
    reason: str
    decision: str | None = None  # the promote stage's: promoted | rejected | skipped

    def summary(self) -> str:
        if not self.ran:
            return f"retrain: not needed ({self.reason})"
        return f"retrain: dvc repro ran ({self.reason}); promotion {self.decision or 'unknown'}"


def waiting_corrections(params: Params, root: Path) -> int:
    """Corrected answers in the log beyond the rows feedback/feedback.csv holds now."""
    from digit_recognizer.data.feedback import read_feedback

    _, pixels, _ = open_log(params, root).labelled()
    exported = root / params.paths.feedback_csv
    held = len(read_feedback(exported)) if exported.exists() else 0
    return max(0, len(pixels) - held)


def retrain(params: Params, root: Path, report: MonitorReport) -> Retraining:
    """On an alert, or once ``retrain_after`` corrections wait: export them and ``dvc repro``;
    the promote stage's gates decide whether the new model replaces the champion."""
    import json
    import subprocess

    waiting = waiting_corrections(params, root)
    reasons = []
    if report.alerts:
        reasons.append("drift: " + ", ".join(measure.name for measure in report.alerts))
    if waiting >= params.monitoring.retrain_after:
        reasons.append(f"{waiting} new corrections")
    if not reasons:
        return Retraining(
            False, f"no alert, {waiting} of {params.monitoring.retrain_after} corrections"
        )
    exported = export_feedback(params, root, root / params.paths.feedback_csv)
    print(f"monitor: {exported} corrected pictures exported; dvc repro", flush=True)
    completed = subprocess.run(
        [program("dvc"), "repro"], cwd=root, env=program_environment(), check=False
    )
    if completed.returncode != 0:
        raise UserError(f"dvc repro failed (exit {completed.returncode}); see its output above")
    promotion = root / params.paths.promotion_report
    decision = json.loads(promotion.read_text())["decision"] if promotion.exists() else None
    return Retraining(True, "; ".join(reasons), decision)


@dataclass(frozen=True)
class Reference:
    """The evaluation split as the champion sees it."""

    version: str
    pixels: npt.NDArray[np.uint8]
    embedding: npt.NDArray[np.float32]
    probabilities: npt.NDArray[np.float32]


# the champion as the monitor uses it: pixels in, (embedding, probabilities) out
Network = Callable[[npt.NDArray[np.uint8]], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]


def reference_as_served(
    network: Network,
    digits: npt.NDArray[np.uint8],
    as_pictures: npt.NDArray[np.uint8],
    picture_share: float,
    version: str,
    seed: int,
) -> Reference:
    """The evaluation digits through the window's doors: its share of them as pictures
    (``as_pictures``: the same digits drawn and read by the picture reader, whose centring
    and resampling differ from MNIST's), the rest as Kaggle rows; then as the champion sees
    them (embedding, probabilities)."""
    pixels = digits.copy()
    drawn = np.random.default_rng(seed).choice(
        len(digits), round(picture_share * len(digits)), replace=False
    )
    pixels[drawn] = as_pictures[drawn]
    embedding, probabilities = network(pixels)
    return Reference(version, pixels, embedding, probabilities)


def drawn_as_pictures(digits: npt.NDArray[np.uint8], cache: Path) -> npt.NDArray[np.uint8]:
    """Each digit drawn as a picture and read back (about 10 ms each, so kept in ``cache``
    under the digits' hash: they change only when prepare reruns)."""
    import hashlib

    from digit_recognizer.data.robustness import read_as_picture
    from digit_recognizer.files import atomic_path

    path = cache / f"reference-as-pictures-{hashlib.sha256(digits.tobytes()).hexdigest()[:16]}.npy"
    if path.exists():
        return np.asarray(np.load(path), dtype=np.uint8)
    drawn = np.stack([read_as_picture(row) for row in digits]).astype(np.uint8)
    with atomic_path(path) as temporary:
        np.save(temporary, drawn)
    return drawn


def _sample(rows: int, limit: int, seed: int) -> npt.NDArray[np.int64]:
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def _traffic(window: LoggedWindow) -> Traffic:
    if not len(window):
        return Traffic(0, None, None, None, None, {})
    return Traffic(
        records=len(window),
        first=float(window.created_at[0]),
        last=float(window.created_at[-1]),
        latency_p50_ms=float(np.median(window.latency_ms)),
        latency_p95_ms=float(np.percentile(window.latency_ms, 95)),
        versions=dict(sorted(Counter(window.versions).items())),
    )


def monitor(
    params: Params, root: Path, *, since: str | None, last: int | None, output_dir: Path
) -> MonitorReport:
    """Compare a window of the log with the reference; write the chart and page to
    ``output_dir`` and log them, with every measure, to the ``monitoring`` experiment."""
    from digit_recognizer.models.embedding import EmbeddingModel

    config = params.monitoring
    now = time.time()
    log = open_log(params, root)
    if log.apply_retention(config, now) is None:
        print("monitor: retention left to the log's owner (this role may not delete)", flush=True)
    window = log.window(
        since=since_timestamp(since, now) if since else None,
        last=last if last is not None else (None if since else config.window_rows),
    )
    store = tracking.Store.for_project(params.mlflow, root)
    registry = tracking.Registry(store, params.mlflow.registered_model_name)
    champion = registry.alias(tracking.CHAMPION)
    if champion is None:
        raise UserError(
            f"registered model '{registry.name}' has no @{tracking.CHAMPION} to compare with; "
            "run 'digits promote'"
        )
    try:
        _, evaluation = evaluation_split(root / params.paths.prepared_dir)
    except FileNotFoundError:
        raise UserError(
            f"{params.paths.prepared_dir}/: no evaluation split to compare with; run 'dvc repro'"
        ) from None
    with tempfile.TemporaryDirectory() as folder:
        network = EmbeddingModel(
            tracking.download_keras_model(registry.name, champion, store, Path(folder))
        )
    chosen = evaluation.images[_sample(len(evaluation.images), config.reference_rows, params.seed)]
    share = window.picture_share()
    as_pictures = drawn_as_pictures(chosen, root / config.log_dir) if share else chosen
    reference = reference_as_served(network, chosen, as_pictures, share, champion, params.seed)
    report, distributions = compare(window, reference, lambda pixels: network(pixels)[0], params)
    chart, page = output_dir / "monitor.png", output_dir / "monitor.html"
    draw_chart(report, distributions, chart)
    write_page(report, chart, page)
    monitoring_store = tracking.Store(store.uri, MONITORING_EXPERIMENT, store.artifact_location)
    tags = {"stage": "monitor", "champion_version": champion}
    with tracking.run(monitoring_store, f"monitor-v{champion}", tags):
        tracking.log_metrics(report.metrics())
        tracking.set_tags({"summary": report.summary(), "alert": str(bool(report.alerts))})
        tracking.log_artifacts([chart, page])
    return report


Embed = Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float32]]


def compare(
    window: LoggedWindow, reference: Reference, embed: Embed, params: Params
) -> tuple[MonitorReport, Distributions]:
    """Every measure of the window against the reference; ``embed`` is the champion's view
    of a picture (its penultimate layer)."""
    config = params.monitoring
    reference_labels = reference.probabilities.argmax(axis=1).astype(np.int64)
    reference_confidence = reference.probabilities.max(axis=1)
    window_confidence = window.probabilities.max(axis=1) if len(window) else np.zeros(0)
    corrected_ids = [key for key in window.prediction_ids if key in window.corrected]
    answered = {
        key: int(label) for key, label in zip(window.prediction_ids, window.labels, strict=True)
    }
    feedback = drift.feedback_accuracy(
        np.array([answered[key] for key in corrected_ids], dtype=np.int64),
        np.array([window.corrected[key] for key in corrected_ids], dtype=np.int64),
    )
    measures = [drift.feedback_measure(feedback, config)]
    judged = len(window) >= config.min_window_rows
    pictures = window.pixels[_sample(len(window.pixels), config.sample_rows, params.seed)]
    if judged:
        measures[:0] = [
            drift.class_mix(reference_labels, window.labels, config),
            drift.confidence_shift(reference_confidence, window_confidence, config),
        ]
        if len(pictures) >= config.min_window_rows:
            window_embedding = embed(pictures)
            measures[2:2] = [
                drift.input_shift(
                    "pixel_shift",
                    reference.pixels.astype(np.float32),
                    pictures.astype(np.float32),
                    config,
                    params.seed,
                ),
                drift.input_shift(
                    "embedding_shift", reference.embedding, window_embedding, config, params.seed
                ),
            ]
    report = MonitorReport(reference.version, _traffic(window), measures, feedback, judged)
    distributions = Distributions(
        reference_labels=reference_labels,
        window_labels=window.labels,
        reference_confidence=reference_confidence,
        window_confidence=window_confidence.astype(np.float32),
        reference_ink=reference.pixels.mean(axis=1),
        window_ink=pictures.mean(axis=1) if len(pictures) else np.zeros(0),
        window_times=window.created_at,
        window_latency_ms=window.latency_ms,
    )
    return report, distributions
