"""digits ui on a PostgreSQL store keeps the store's password out of every process's arguments
and out of what it prints, and still serves the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.helpers.postgres import postgres_url
from tests.helpers.project import REPOSITORY
from tests.helpers.servers import free_port, wait_for

__all__ = ["postgres_url"]  # the fixture, used by name
PASSWORD = "ui-store-secret-4821"


def arguments_of_every_process() -> str:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue  # ended meanwhile
    return "\n".join(found)


@pytest.mark.slow
def test_digits_ui_keeps_a_postgresql_password_out_of_argv_and_its_output(
    postgres_url: str, project: Path
) -> None:
    # given a store on PostgreSQL whose URL carries a password (the cluster trusts loopback)
    with psycopg.connect(
        postgres_url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres", autocommit=True
    ) as connection:
        connection.execute("CREATE DATABASE uistore")
    host = postgres_url.split("@", 1)[1].rsplit("/", 1)[0]
    store = f"postgresql://postgres:{PASSWORD}@{host}/uistore"
    port = free_port()
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "PYTHONPATH": str(REPOSITORY / "src"),
    }
    # when digits ui runs
    ui = subprocess.Popen(
        [sys.executable, "-m", "digit_recognizer.cli", "ui", "--port", str(port)],
        cwd=project,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", ui)
        # then the UI answers, and no process on the machine shows the password
        assert PASSWORD not in arguments_of_every_process()
    finally:
        os.killpg(ui.pid, 15)
        output, _ = ui.communicate(timeout=60)
    # and nothing it printed holds it
    assert PASSWORD not in output.decode(errors="replace")
