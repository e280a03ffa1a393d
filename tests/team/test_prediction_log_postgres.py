"""The prediction log on a real PostgreSQL (a throwaway cluster of Debian's server programs):
the same code path as SQLite; two processes writing at once lose nothing."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from digit_recognizer.monitoring.corrections import record_corrections
from digit_recognizer.monitoring.log import PredictionLog
from digit_recognizer.team.postgres import postgres_bin
from tests.code.test_prediction_log import records, write_records_from_a_process
from tests.conftest import free_port

OWNER = "postgres"


def as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", OWNER, "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A cluster of its own on 127.0.0.1 (trust on loopback), with a database for the log."""
    folder = Path(tempfile.mkdtemp(prefix="digits-log-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(folder, OWNER, OWNER)
    cluster, port = folder / "cluster", free_port()
    programs = postgres_bin()
    subprocess.run(
        as_owner([str(programs / "initdb"), "-D", str(cluster), "-U", OWNER, "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    control = [str(programs / "pg_ctl"), "-D", str(cluster), "-w"]
    # a log file, not a pipe: the server would hold a captured pipe open and run() never return
    server_log = ["-l", str(folder / "server.log")]
    subprocess.run(as_owner([*control, *server_log, "-o", options, "start"]), check=True)
    try:
        with psycopg.connect(
            f"host=127.0.0.1 port={port} user={OWNER} dbname=postgres", autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE predictions")
        yield f"postgresql+psycopg://{OWNER}@127.0.0.1:{port}/predictions"
    finally:
        subprocess.run(as_owner([*control, "-m", "fast", "stop"]), check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


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
