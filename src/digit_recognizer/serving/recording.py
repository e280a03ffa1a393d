"""What the server keeps of each answer: a record in the prediction log (an id per row, sent
back in ``X-Prediction-Id``) and the Prometheus metrics; and people's corrections of it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from digit_recognizer.monitoring.corrections import UnknownPrediction, record_corrections
from digit_recognizer.monitoring.log import AnswerBatch, PredictionLog, new_prediction_ids
from digit_recognizer.monitoring.metrics import ServingMetrics
from digit_recognizer.monitoring.writer import LogWriter

PREDICTION_ID_HEADER = "X-Prediction-Id"


@dataclass(frozen=True)
class LogSettings:
    """The prediction log as one worker writes it ('' url: no log)."""

    url: str
    store_pixels: bool
    queue_size: int
    batch_size: int
    flush_seconds: float


class Recorder:
    """One per worker: every answer counted, and recorded when the log is on."""

    def __init__(self, settings: LogSettings, metrics: ServingMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.writer: LogWriter | None = None
        if settings.url:
            log = PredictionLog(settings.url)
            try:
                log.create_tables()
            except Exception as error:  # serving goes on; records are dropped and counted
                print(f"serve: prediction log unavailable at start: {error}", flush=True)
            self.writer = LogWriter(
                log,
                queue_size=settings.queue_size,
                batch_size=settings.batch_size,
                flush_seconds=settings.flush_seconds,
                on_drop=lambda count: metrics.log_dropped.inc(count),
            )

    def record(
        self,
        kind: str,
        pixels: npt.NDArray[np.integer],
        probabilities: npt.NDArray[np.floating],
        version: str,
        started: float,
    ) -> list[str]:
        """Count the answers and queue one record per row; the rows' prediction ids."""
        self.metrics.answered(probabilities)
        if self.writer is None:
            return []
        identifiers = new_prediction_ids(len(pixels))
        self.writer.submit(
            AnswerBatch(
                prediction_ids=identifiers,
                created_at=time.time(),
                version=version,
                input_kind=kind,
                probabilities=probabilities.astype(np.float32),
                pixels=pixels.astype(np.uint8) if self.settings.store_pixels else None,
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        )
        return identifiers

    def correct(self, prediction_id: str, label: int, source: str) -> None:
        """Append a person's label; UnknownPrediction when the log has no such answer (one
        answered a moment ago may still be queued here or in another worker: wait once)."""
        if self.writer is None:
            raise UnknownPrediction("this server keeps no prediction log (monitoring.enabled)")
        log = self.writer.log
        try:
            record_corrections(log, [(prediction_id, label)], source)
        except UnknownPrediction:
            time.sleep(3 * self.settings.flush_seconds + 0.1)
            record_corrections(log, [(prediction_id, label)], source)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
