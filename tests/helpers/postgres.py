"""A throwaway PostgreSQL cluster of Debian's server programs, for the tests that need one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from digit_recognizer.team.postgres import postgres_bin
from tests.helpers.servers import free_port

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
    # a throwaway cluster: nothing in it must survive a crash, so no commit waits for the disk
    durability = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 {durability}"
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
