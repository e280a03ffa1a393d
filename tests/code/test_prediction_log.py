"""The prediction log on a real SQLite file: the writer off the request path, corrections,
export, retention, and several processes writing at once."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.config import MonitoringConfig
from digit_recognizer.data.kaggle_csv import read_digits_csv
from digit_recognizer.errors import UserError
from digit_recognizer.monitoring.corrections import (
    BadCorrection,
    UnknownPrediction,
    add_corrections_file,
    correction_from_json,
    export_labelled,
    record_corrections,
)
from digit_recognizer.monitoring.log import AnswerBatch, PredictionLog, new_prediction_ids
from digit_recognizer.monitoring.writer import LogWriter


def records(count: int, seed: int = 0, created_at: float | None = None) -> AnswerBatch:
    """One request's answers: ``count`` rows of random pixels and probabilities."""
    generator = np.random.default_rng(seed)
    return AnswerBatch(
        prediction_ids=new_prediction_ids(count),
        created_at=time.time() if created_at is None else created_at,
        version="3",
        input_kind="json",
        probabilities=generator.dirichlet(np.ones(10), count).astype(np.float32),
        pixels=generator.integers(0, 256, (count, 784), dtype=np.uint8),
        latency_ms=1.5,
    )


@pytest.fixture
def log(tmp_path: Path) -> PredictionLog:
    opened = PredictionLog(f"sqlite:///{tmp_path / 'log' / 'predictions.db'}")
    opened.create_tables()
    return opened


def test_the_writer_keeps_every_record_and_close_writes_what_waits(log: PredictionLog) -> None:
    # given a writer that batches by 64 and flushes rarely
    writer = LogWriter(log, queue_size=10_000, batch_size=64, flush_seconds=5.0)
    sent = [records(100, seed=seed) for seed in range(10)]
    # when requests of 100 rows arrive in a burst and the writer is closed at once (SIGTERM)
    for answers in sent:
        writer.submit(answers)
    writer.close()
    # then every record is in the log, whole
    assert (writer.written, writer.dropped) == (1_000, 0)
    window = log.window(since=None, last=None)
    assert sorted(window.prediction_ids) == sorted(key for a in sent for key in a.prediction_ids)
    first = window.prediction_ids[0]
    request = next(answers for answers in sent if first in answers.prediction_ids)
    index = request.prediction_ids.index(first)
    assert request.pixels is not None
    assert np.array_equal(window.pixels[0], request.pixels[index])
    assert np.allclose(window.probabilities[0], request.probabilities[index])


def test_a_full_queue_or_a_store_that_is_down_drops_and_counts_without_blocking(
    log: PredictionLog,
) -> None:
    # given a store that refuses every insert (its table is gone) and a queue of 10
    with log.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE predictions")
    dropped: list[int] = []
    writer = LogWriter(log, queue_size=10, batch_size=5, flush_seconds=0.05, on_drop=dropped.append)
    # when 50 records arrive, ten at a time
    started = time.perf_counter()
    for seed in range(5):
        writer.submit(records(10, seed=seed))
    submitted_in = time.perf_counter() - started
    writer.close()
    # then submitting took no time, nothing was written, and all 50 were counted as dropped
    assert submitted_in < 0.5
    assert writer.written == 0
    assert writer.dropped == 50 == sum(dropped)


def write_records_from_a_process(url: str, seed: int) -> None:
    log = PredictionLog(url)
    log.create_tables()
    writer = LogWriter(log, queue_size=5_000, batch_size=50, flush_seconds=0.01)
    for start in range(0, 2_000, 20):
        writer.submit(records(20, seed=seed * 1_000 + start))  # one request of 20 rows
    writer.close()
    assert writer.dropped == 0


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    # given one SQLite log and two processes (the server's two workers)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=write_records_from_a_process, args=(url, seed)) for seed in (1, 2)
    ]
    # when both write 2,000 records at the same time
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    # then the log holds exactly one record per answer
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert PredictionLog(url).count() == 4_000


def test_corrections_are_checked_appended_and_the_newest_counts(log: PredictionLog) -> None:
    # given three answers in the log
    sent = records(3)
    log.insert([sent])
    first, second = sent.prediction_ids[0], sent.prediction_ids[1]
    # when a label is given twice for one answer and once for another
    record_corrections(log, [(first, 4)], "page")
    record_corrections(log, [(first, 7), (second, 2)], "api")
    # then the newest label counts and both of the first are kept for audit
    assert log.newest_corrections() == {first: 7, second: 2}
    with log.engine.connect() as connection:
        import sqlalchemy as sa

        kept = connection.execute(
            sa.select(sa.func.count()).where(log.corrections.c.prediction_id == first)
        ).scalar_one()
    assert kept == 2
    # and an unknown id or a label that is no digit is refused, adding nothing
    with pytest.raises(UnknownPrediction, match="no answer with prediction id 'nope'"):
        record_corrections(log, [(second, 3), ("nope", 3)], "api")
    assert log.newest_corrections()[second] == 2
    for body, reason in [
        ({"prediction_id": first, "label": 10}, "label must be a digit 0-9, got 10"),
        ({"prediction_id": first, "label": True}, "label must be a digit 0-9"),
        ({"prediction_id": first, "label": "7"}, "label must be a digit 0-9"),
        ({"prediction_id": first}, "POST"),
        ([first, 7], "POST"),
        ({"prediction_id": 5, "label": 7}, "prediction_id must be"),
    ]:
        with pytest.raises(BadCorrection, match=reason):
            correction_from_json(body)


def test_a_corrections_file_is_all_or_nothing_and_names_the_line(
    log: PredictionLog, tmp_path: Path
) -> None:
    answers = records(2)
    log.insert([answers])
    sent = answers.prediction_ids
    good = tmp_path / "good.csv"
    good.write_text(f"prediction_id,label\n{sent[0]},3\n{sent[1]},9\n")
    assert add_corrections_file(log, good) == 2
    assert log.newest_corrections() == {sent[0]: 3, sent[1]: 9}
    cases = {
        "id,digit\nx,1\n": "line 1: the header must be 'prediction_id,label'",
        f"prediction_id,label\n{sent[0]},12\n": "line 2: label must be a digit",
        f"prediction_id,label\n{sent[0]},1,2\n": "line 2: expected 2 values",
        f"prediction_id,label\n{sent[0]},1\nunknown,1\n": "'unknown' in the log",
        "prediction_id,label\n": "no corrections after the header",
    }
    for number, (content, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{number}.csv"
        bad.write_text(content)
        with pytest.raises(UserError, match=message):
            add_corrections_file(log, bad)
    assert log.newest_corrections()[sent[0]] == 3, "nothing added by a bad file"
    with pytest.raises(UserError, match="file not found"):
        add_corrections_file(log, tmp_path / "missing.csv")


def test_export_writes_the_corrected_pictures_in_kaggle_train_layout(
    log: PredictionLog, tmp_path: Path
) -> None:
    # given four answers, two of them corrected, one of those without its pixels
    sent = records(3)
    without_pixels = dataclasses.replace(records(1, seed=1), pixels=None)
    log.insert([sent, without_pixels])
    assert sent.pixels is not None
    record_corrections(
        log, [(sent.prediction_ids[0], 5), (without_pixels.prediction_ids[0], 1)], "api"
    )
    record_corrections(log, [(sent.prediction_ids[2], 8)], "api")
    # when exported
    output = tmp_path / "feedback" / "feedback.csv"
    assert export_labelled(log, output) == 2
    # then the file is Kaggle's train layout, holding the pictures that kept their pixels
    table = read_digits_csv(output, require_labels=False)
    assert table.labels is not None
    expected = sorted(
        [(sent.prediction_ids[0], 5, sent.pixels[0]), (sent.prediction_ids[2], 8, sent.pixels[2])]
    )
    assert table.labels.tolist() == [label for _, label, _ in expected]
    assert np.array_equal(table.images, np.stack([np.asarray(pixels) for *_, pixels in expected]))


def test_retention_keeps_the_newest_rows_and_days(log: PredictionLog) -> None:
    now = time.time()
    log.insert([records(5, created_at=now - 10 * 86_400)])
    log.insert([records(5, seed=1, created_at=now - 3600)])
    log.insert([records(5, seed=2, created_at=now)])
    config = MonitoringConfig(retention_days=7.0, retention_rows=0)
    assert log.apply_retention(config, now) == 5
    assert log.count() == 10
    assert log.apply_retention(MonitoringConfig(retention_days=0, retention_rows=5), now) == 5
    assert log.count() == 5
    assert len(log.window(since=now - 60, last=None)) == 5
    assert len(log.window(since=None, last=3)) == 3


def test_since_takes_a_duration_or_a_time_and_names_a_bad_one() -> None:
    from datetime import datetime

    from digit_recognizer.monitoring.commands import since_timestamp

    now = 1_800_000_000.0
    assert since_timestamp("30m", now) == now - 1_800
    assert since_timestamp("7d", now) == now - 7 * 86_400
    moment = datetime(2026, 12, 1, 8, 0)
    assert since_timestamp("2026-12-01T08:00", now) == moment.timestamp()
    with pytest.raises(UserError, match="--since 'yesterday': give a duration"):
        since_timestamp("yesterday", now)


def test_a_log_url_that_is_no_database_is_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from digit_recognizer.cli import main

    for url, message in (
        ("not a url at all", "is not a database URL"),
        ("nosuchdb://user:secret@host/db", "no driver for nosuchdb://user:***@host/db"),
        (
            "postgresql+pg8000://u:secret@h/d?sslmode=verify-full&sslrootcert=/nowhere/ca.pem",
            "cannot read the authority sslrootcert=/nowhere/ca.pem",
        ),
    ):
        monkeypatch.setenv("DIGITS_PREDICTION_LOG_URL", url)
        assert main(["monitor"]) == 2
        error = capsys.readouterr().err
        assert message in error and "secret" not in error, error
        assert error.count("\n") == 1


def test_the_pure_python_driver_takes_libpq_ssl_settings() -> None:
    import ssl

    from sqlalchemy.engine import make_url

    from digit_recognizer.monitoring.log import _pg8000_ssl

    # given the team's log URL as a user's settings write it (any readable authority will do)
    authority = ssl.get_default_verify_paths().openssl_cafile
    url = make_url(
        f"postgresql+pg8000://w:p@h:5433/predictions?sslmode=verify-full&sslrootcert={authority}"
    )
    # when it is read for the driver, then the SSL context checks the name and the chain, and
    # the URL keeps no libpq-only parameter
    parsed, arguments = _pg8000_ssl(url)
    context = arguments["ssl_context"]
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert dict(parsed.query) == {} and parsed.database == "predictions"
    # and sslmode=require encrypts without checking, disable not at all
    _, required = _pg8000_ssl(make_url("postgresql+pg8000://w:p@h/d?sslmode=require"))
    assert required["ssl_context"].verify_mode == ssl.CERT_NONE
    assert _pg8000_ssl(make_url("postgresql+pg8000://w:p@h/d?sslmode=disable"))[1] == {}
