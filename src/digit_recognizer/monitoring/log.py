"""The prediction log: one record per answer the server gives, and people's corrections.

One code path for both stores through SQLAlchemy Core: an SQLite file on one machine (WAL,
so the server's workers and ``digits monitor`` read and write at once), or the team's
PostgreSQL. Corrections are appended, never updated: the newest label of a prediction counts,
and every earlier one stays for audit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import MonitoringConfig
from digit_recognizer.config.environment import environment
from digit_recognizer.errors import UserError

CLASS_COUNT = 10
PIXEL_COUNT = 784


def new_prediction_ids(count: int) -> list[str]:
    """Random 32-hex-digit ids, drawn at once (uuid4 one by one costs more than a batch's
    whole record on the request path)."""
    text = os.urandom(16 * count).hex()
    return [text[index * 32 : (index + 1) * 32] for index in range(count)]


@dataclass(frozen=True)
class AnswerBatch:
    """The answers to one request, one record per row: what was asked (the pixels as the model
    saw them), what was said, by which version, how fast."""

    prediction_ids: list[str]
    created_at: float  # seconds since the epoch
    version: str
    input_kind: str
    probabilities: npt.NDArray[np.float32]  # (n, 10)
    pixels: npt.NDArray[np.uint8] | None  # (n, 784); None when monitoring.store_pixels is off
    latency_ms: float

    def __len__(self) -> int:
        return len(self.prediction_ids)

    def rows(self) -> list[dict[str, Any]]:
        probabilities = np.ascontiguousarray(self.probabilities, dtype=np.float32)
        labels = probabilities.argmax(axis=1).tolist()
        confidences = probabilities.max(axis=1).tolist()
        pixels = (
            [None] * len(self)
            if self.pixels is None
            else [row.tobytes() for row in np.ascontiguousarray(self.pixels, dtype=np.uint8)]
        )
        return [
            {
                "prediction_id": identifier,
                "created_at": self.created_at,
                "version": self.version,
                "input_kind": self.input_kind,
                "label": label,
                "confidence": confidence,
                "probabilities": row.tobytes(),
                "pixels": picture,
                "latency_ms": self.latency_ms,
            }
            for identifier, label, confidence, row, picture in zip(
                self.prediction_ids, labels, confidences, probabilities, pixels, strict=True
            )
        ]


# the input kinds read by the picture reader (the rest came as Kaggle rows)
PICTURE_KINDS = frozenset({"picture", "multipart"})


@dataclass(frozen=True)
class LoggedWindow:
    """A window of the log as columns (``digits monitor``'s input)."""

    prediction_ids: list[str]
    created_at: npt.NDArray[np.float64]
    versions: list[str]
    input_kinds: list[str]
    labels: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float32]  # (n, 10)
    latency_ms: npt.NDArray[np.float64]
    pixels: npt.NDArray[np.uint8]  # (m, 784): the records that kept their pixels
    pixel_rows: npt.NDArray[np.int64]  # which of the n records those m are
    corrected: dict[str, int]  # prediction id -> the newest label people gave

    def __len__(self) -> int:
        return len(self.prediction_ids)

    def picture_share(self) -> float:
        """The share of the records (of those that kept pixels, if any did) that came as
        pictures rather than Kaggle rows."""
        rows = self.pixel_rows if len(self.pixel_rows) else range(len(self))
        kinds = [self.input_kinds[row] for row in rows]
        return sum(kind in PICTURE_KINDS for kind in kinds) / len(kinds) if kinds else 0.0


def _tables() -> tuple[Any, Any, Any]:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    predictions = sa.Table(
        "predictions",
        metadata,
        sa.Column("prediction_id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("input_kind", sa.String(16), nullable=False),
        sa.Column("label", sa.SmallInteger, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("probabilities", sa.LargeBinary, nullable=False),  # 10 float32
        sa.Column("pixels", sa.LargeBinary, nullable=True),  # 784 uint8
        sa.Column("latency_ms", sa.Float, nullable=False),
    )
    corrections = sa.Table(
        "corrections",
        metadata,
        sa.Column("correction_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(32), nullable=False, index=True),
        sa.Column("label", sa.SmallInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),  # page, api, batch
    )
    return metadata, predictions, corrections


def log_url(config: MonitoringConfig, root: Path) -> str:
    """Where the log lives: DIGITS_PREDICTION_LOG_URL, monitoring.database_url, or SQLite."""
    url = environment().prediction_log_url or config.database_url
    if url:
        return url
    return f"sqlite:///{(root / config.log_dir / 'predictions.db').as_posix()}"


def redacted(url: str) -> str:
    """The URL as it may be printed: no password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: say so without echoing it
        return "(an unreadable database URL)"


def _pg8000_ssl(parsed: Any) -> tuple[Any, dict[str, Any]]:
    """A ``postgresql+pg8000://`` URL's libpq-style ``sslmode`` and ``sslrootcert`` as the
    pure-Python driver takes them: an SSL context of Python's own ssl module. (psycopg's
    libpq cannot do SSL in a process that loaded TensorFlow, whose BoringSSL it then calls:
    ``free(): invalid pointer``; the serving workers and ``digits monitor`` load it.)"""
    import ssl

    query = dict(parsed.query)
    mode = str(query.pop("sslmode", "prefer"))
    authority = query.pop("sslrootcert", None)
    parsed = parsed.set(query=query)
    if mode in ("disable", "allow", "prefer"):
        return parsed, {}
    try:
        context = ssl.create_default_context(
            cafile=None if authority in (None, "system") else str(authority)
        )
    except (OSError, ssl.SSLError) as error:
        raise UserError(
            f"prediction log: cannot read the authority sslrootcert={authority} ({error})"
        ) from None
    if mode in ("require", "verify-ca"):
        context.check_hostname = False
    if mode == "require":
        context.verify_mode = ssl.CERT_NONE
    return parsed, {"ssl_context": context}


class PredictionLog:
    """The log's tables in one database; safe to share between threads."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise UserError(f"prediction log: {redacted(url)} is not a database URL") from None
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"timeout": 30} if self.is_sqlite else {}
        if parsed.drivername.endswith("+pg8000"):
            parsed, connect_args = _pg8000_ssl(parsed)
        try:
            self.engine = sa.create_engine(
                parsed, pool_pre_ping=not self.is_sqlite, connect_args=connect_args
            )
        except NoSuchModuleError:
            raise UserError(f"prediction log: no driver for {redacted(url)}") from None
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_settings)
        self.metadata, self.predictions, self.corrections = _tables()

    def create_tables(self) -> None:
        """Create what is missing (two workers may race: the loser finds the tables there)."""
        from sqlalchemy.exc import OperationalError, ProgrammingError

        for attempt in range(3):
            try:
                self.metadata.create_all(self.engine, checkfirst=True)
                return
            except (OperationalError, ProgrammingError):
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def insert(self, answers: Sequence[AnswerBatch]) -> None:
        rows = [row for batch in answers for row in batch.rows()]
        if not rows:
            return
        with self.engine.begin() as connection:
            connection.execute(self.predictions.insert(), rows)

    def known_ids(self, prediction_ids: Iterable[str]) -> set[str]:
        import sqlalchemy as sa

        wanted = list(dict.fromkeys(prediction_ids))
        found: set[str] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = sa.select(self.predictions.c.prediction_id).where(
                    self.predictions.c.prediction_id.in_(chunk)
                )
                found.update(row[0] for row in connection.execute(query))
        return found

    def add_corrections(self, labels: Sequence[tuple[str, int]], source: str) -> None:
        """Append people's labels (all or none); the caller checked ids and labels."""
        now = time.time()
        rows = [
            {"prediction_id": identifier, "label": label, "created_at": now, "source": source}
            for identifier, label in labels
        ]
        with self.engine.begin() as connection:
            connection.execute(self.corrections.insert(), rows)

    def newest_corrections(self, prediction_ids: Sequence[str] | None = None) -> dict[str, int]:
        """The newest label of each corrected prediction (of those given, or all)."""
        import sqlalchemy as sa

        table = self.corrections
        query = sa.select(table.c.prediction_id, table.c.label).order_by(
            table.c.created_at, table.c.correction_id
        )
        newest: dict[str, int] = {}
        with self.engine.connect() as connection:
            if prediction_ids is None:
                newest.update((row[0], int(row[1])) for row in connection.execute(query))
                return newest
            for start in range(0, len(prediction_ids), 500):
                chunk = list(prediction_ids[start : start + 500])
                rows = connection.execute(query.where(table.c.prediction_id.in_(chunk)))
                newest.update((row[0], int(row[1])) for row in rows)
        return newest

    def window(self, *, since: float | None, last: int | None) -> LoggedWindow:
        """The records since a time, or the newest ``last`` ones, oldest first."""
        import sqlalchemy as sa

        table = self.predictions
        query = sa.select(table).order_by(table.c.created_at.desc(), table.c.prediction_id)
        if since is not None:
            query = query.where(table.c.created_at >= since)
        if last is not None:
            query = query.limit(last)
        with self.engine.connect() as connection:
            rows = list(connection.execute(query))[::-1]
        identifiers = [row.prediction_id for row in rows]
        with_pixels = [index for index, row in enumerate(rows) if row.pixels is not None]
        return LoggedWindow(
            prediction_ids=identifiers,
            created_at=np.array([row.created_at for row in rows], dtype=np.float64),
            versions=[row.version for row in rows],
            input_kinds=[row.input_kind for row in rows],
            labels=np.array([row.label for row in rows], dtype=np.int64),
            probabilities=np.frombuffer(
                b"".join(row.probabilities for row in rows), dtype=np.float32
            ).reshape(-1, CLASS_COUNT),
            latency_ms=np.array([row.latency_ms for row in rows], dtype=np.float64),
            pixels=np.frombuffer(
                b"".join(rows[index].pixels for index in with_pixels), dtype=np.uint8
            ).reshape(-1, PIXEL_COUNT),
            pixel_rows=np.array(with_pixels, dtype=np.int64),
            corrected=self.newest_corrections(identifiers),
        )

    def labelled(self) -> tuple[list[str], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """Every corrected prediction that kept its pixels: ids (sorted), pixels, newest labels."""
        import sqlalchemy as sa

        newest = self.newest_corrections()
        table = self.predictions
        found: dict[str, bytes] = {}
        with self.engine.connect() as connection:
            identifiers = sorted(newest)
            for start in range(0, len(identifiers), 500):
                chunk = identifiers[start : start + 500]
                query = sa.select(table.c.prediction_id, table.c.pixels).where(
                    table.c.prediction_id.in_(chunk), table.c.pixels.is_not(None)
                )
                found.update((row[0], row[1]) for row in connection.execute(query))
        kept = sorted(found)
        pixels = np.frombuffer(b"".join(found[key] for key in kept), dtype=np.uint8)
        labels = np.array([newest[key] for key in kept], dtype=np.uint8)
        return kept, pixels.reshape(-1, PIXEL_COUNT), labels

    def count(self) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count()).select_from(self.predictions)
                ).scalar_one()
            )

    def apply_retention(self, config: MonitoringConfig, now: float) -> int | None:
        """Delete records past ``retention_days`` and beyond the newest ``retention_rows``
        (corrections stay: they are the labelled data). Returns how many went; None when this
        role may not delete (the team's writer role: the log's owner applies retention)."""
        import sqlalchemy as sa

        table = self.predictions
        deleted = 0
        if not self._may_delete():
            return None
        with self.engine.begin() as connection:
            if config.retention_days > 0:
                cutoff = now - config.retention_days * 86_400
                deleted += connection.execute(
                    table.delete().where(table.c.created_at < cutoff)
                ).rowcount
            if config.retention_rows > 0:
                newest = (
                    sa.select(table.c.created_at)
                    .order_by(table.c.created_at.desc())
                    .offset(config.retention_rows - 1)
                    .limit(1)
                    .scalar_subquery()
                )
                deleted += connection.execute(
                    table.delete().where(table.c.created_at < newest)
                ).rowcount
        return int(deleted)

    def _may_delete(self) -> bool:
        import sqlalchemy as sa

        if self.is_sqlite:
            return True
        with self.engine.connect() as connection:
            return bool(
                connection.execute(
                    sa.text("SELECT has_table_privilege(:table, 'DELETE')"),
                    {"table": self.predictions.name},
                ).scalar()
            )


def _sqlite_settings(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writers
    cursor.execute(
        "PRAGMA synchronous=NORMAL"
    )  # WAL's own durability: a commit survives a crash of the process
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
