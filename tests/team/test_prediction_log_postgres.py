"""The prediction log on a real PostgreSQL (a throwaway cluster of Debian's server programs):
the same code path as SQLite; two processes writing at once lose nothing."""

from __future__ import annotations

import multiprocessing

import pytest

from digit_recognizer.monitoring.corrections import record_corrections
from digit_recognizer.monitoring.log import PredictionLog
from tests.code.test_prediction_log import records, write_records_from_a_process
from tests.helpers.postgres import postgres_url

__all__ = ["postgres_url"]  # the fixture, used by name


@pytest.mark.slow
def test_the_log_on_postgresql_keeps_one_record_per_answer_from_two_processes(
    postgres_url: str,
) -> None:
    # given the log's tables on PostgreSQL, and two processes (the server's two workers)
    log = PredictionLog(postgres_url)
    log.create_tables()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=write_records_from_a_process, args=(postgres_url, seed))
        for seed in (1, 2)
    ]
    # when both write 2,000 records at the same time
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    # then the log holds exactly one record per answer, and corrections work the same
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert log.count() == 4_000
    sent = records(2)
    log.insert([sent])
    first = sent.prediction_ids[0]
    record_corrections(log, [(first, 4), (first, 6)], "api")
    assert log.newest_corrections([first]) == {first: 6}
    window = log.window(since=None, last=2)
    assert sorted(window.prediction_ids) == sorted(sent.prediction_ids)
