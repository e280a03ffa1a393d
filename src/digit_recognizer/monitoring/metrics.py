"""What ``GET /metrics`` exposes, in Prometheus' format, through the official client.

``digits serve`` runs several worker processes: each writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (set before any worker starts) and a scrape of any worker sums
them all, so one scrape sees the whole server.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
CONFIDENCE_BUCKETS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)


class ServingMetrics:
    """The server's counters and histograms (one set per worker process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        # A registry of its own: the values go to the multiprocess files either way, and a
        # second app in one process (tests) does not collide with the first's names.
        registry = CollectorRegistry()
        self.requests = Counter(
            "digits_requests",
            "Requests answered, by kind of input and HTTP status",
            ["kind", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "digits_request_latency_seconds",
            "Time to answer a request, by kind of input",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.answers = Counter(
            "digits_answers", "Answers by predicted digit", ["digit"], registry=registry
        )
        self.top_probability = Histogram(
            "digits_top_probability",
            "The probability of the answered digit",
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.served_version = Gauge(
            "digits_served_version",
            "The registered version each worker serves",
            multiprocess_mode="liveall",
            registry=registry,
        )
        self.log_dropped = Counter(
            "digits_prediction_log_dropped",
            "Answers the prediction log could not keep (queue full or store down)",
            registry=registry,
        )

    def answered(self, probabilities: npt.NDArray[np.floating]) -> None:
        labels = probabilities.argmax(axis=1)
        for digit, count in zip(*np.unique(labels, return_counts=True), strict=True):
            self.answers.labels(digit=str(int(digit))).inc(int(count))
        for top in probabilities.max(axis=1):
            self.top_probability.observe(float(top))

    def request(self, kind: str, status: int, seconds: float) -> None:
        self.requests.labels(kind=kind, status=str(status)).inc()
        self.latency.labels(kind=kind).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """Every worker's values summed (multiprocess mode), with the format's content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
