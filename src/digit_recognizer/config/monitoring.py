"""The ``monitoring`` section: the prediction log behind ``digits serve``, and what
``digits monitor`` compares and when it raises an alert."""

from __future__ import annotations

from pydantic import Field

from digit_recognizer.config.section import Section


class MonitoringConfig(Section):
    enabled: bool = True  # false: digits serve records nothing (metrics are still served)
    # Empty: an SQLite file in log_dir; or a SQLAlchemy URL (postgresql+psycopg://...).
    # DIGITS_PREDICTION_LOG_URL overrides it (the team's settings carry it, with its password).
    database_url: str = ""
    log_dir: str = ".monitoring"  # the SQLite log, the metrics files of the server's workers
    store_pixels: bool = True  # false: every record but the 28 x 28 pixels the model saw
    # The writer's queue between the requests and the database: past it records are dropped
    # (and counted), never a request held up.
    queue_size: int = Field(default=20_000, ge=1)
    batch_size: int = Field(default=256, ge=1)
    flush_seconds: float = Field(default=0.2, gt=0.0, le=60.0)
    # Retention, applied by digits monitor; 0 keeps everything.
    retention_days: float = Field(default=90.0, ge=0.0)
    retention_rows: int = Field(default=1_000_000, ge=0)
    # digits monitor: the window (the last N records unless --since / --last say otherwise)
    window_rows: int = Field(default=1_000, ge=1)
    # the evaluation split as the champion sees it, and the window's pictures compared with it
    reference_rows: int = Field(default=5_000, ge=10)
    sample_rows: int = Field(default=5_000, ge=10)
    min_window_rows: int = Field(default=100, ge=1)  # fewer: too few to judge drift
    # Alerts: a measure must be both significant and larger than its threshold.
    significance_level: float = Field(default=0.001, gt=0.0, lt=1.0)
    max_class_mix_distance: float = Field(default=0.1, gt=0.0, le=1.0)  # total variation
    max_confidence_shift: float = Field(default=0.1, gt=0.0, le=1.0)  # Kolmogorov-Smirnov D
    max_input_shift: float = Field(default=0.15, gt=0.0, le=1.0)  # KS D on principal axes
    min_feedback_accuracy: float = Field(default=0.9, ge=0.0, le=1.0)  # corrected answers
    input_components: int = Field(default=10, ge=1, le=100)  # principal axes compared
    # digits monitor --retrain: export and dvc repro on an alert, or once this many
    # corrections wait that feedback/feedback.csv does not hold yet
    retrain_after: int = Field(default=200, ge=1)
