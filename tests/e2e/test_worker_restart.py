"""A served model outlives its tracking store: a worker killed while the store is down comes
back answering with the version it served, from its local copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from digit_recognizer import tracking
from digit_recognizer.config import load_params
from tests.e2e.test_serving import DIGITS, serve_params, stop
from tests.helpers.project import REPOSITORY
from tests.helpers.registry import register_candidate
from tests.helpers.servers import free_port, wait_for

READY = "Application startup complete"


def wait_for_line(log: Path, text: str, count: int, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while log.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} x{count} not in {log}:\n{log.read_text()}"
        time.sleep(0.2)


def uvicorn_workers(server: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The worker processes uvicorn spawned under ``digits serve``."""
    return [
        child
        for child in psutil.Process(server.pid).children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline())
    ]


class Client(threading.Thread):
    """Sends one Kaggle row after another, noting when each answer came and what it was."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[tuple[float, int | str, str | None]] = []
        self.running = True

    def run(self) -> None:
        body = json.dumps({"inputs": [[0] * 784]}).encode()
        while self.running:
            call = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(call, timeout=30) as response:
                    answer = (response.status, response.headers.get("X-Model-Version"))
            except urllib.error.HTTPError as error:
                answer = (error.code, None)
            except OSError as error:  # the connection of a request in flight when killed
                answer = (type(error).__name__, None)
            self.answers.append((time.monotonic(), *answer))
            time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_a_worker_killed_while_the_store_is_down_comes_back_with_the_served_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    # given an MLflow server as the tracking store, a champion in it, and two workers serving it
    store_port = free_port()
    store_server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'store.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(store_port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **tracking.SERVER_ENVIRONMENT},
        start_new_session=True,
    )
    wait_for(f"http://127.0.0.1:{store_port}/health", store_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{store_port}")
    serve_params(workers=2, poll_seconds=0.5)
    version = register_candidate(project, "cnn", range(10)).version
    # the alias set directly: promotion against a server wants the team's lock database
    params = load_params(Path("params.yaml"))
    store = tracking.Store.for_project(params.mlflow, project)
    tracking.Registry(store, params.mlflow.registered_model_name).set_alias(
        tracking.CHAMPION, str(version)
    )
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*DIGITS, "serve", "--port", str(port)],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY / "src")},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = Client(f"http://127.0.0.1:{port}/invocations")
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", server)
        wait_for_line(log, READY, 2)
        first, second = uvicorn_workers(server)
        client.start()

        # when the store goes down and a worker is killed
        os.killpg(store_server.pid, 9)
        store_server.wait(timeout=30)
        time.sleep(1.0)
        first.kill()
        # then its replacement starts from the local copy of the version it served
        wait_for_line(log, READY, 3)
        assert f"serving version {version}, last served, from its local copy" in log.read_text()

        # when the other original worker is killed too, the replacement answers alone
        second.kill()
        killed_second = time.monotonic()
        wait_for_line(log, READY, 4)
        restarted_second = time.monotonic()
        time.sleep(1.0)
    finally:
        client.running = False
        client.join(timeout=60)
        stop(server)
        if store_server.poll() is None:
            os.killpg(store_server.pid, 9)

    # then every request was answered by the served version, but at most the one in flight
    # at each kill, and requests were answered while only the replacement was up
    failed = [answer for answer in client.answers if answer[1] != 200]
    assert len(failed) <= 2, failed
    assert {answer[2] for answer in client.answers if answer[1] == 200} == {str(version)}
    alone = [when for when, status, _ in client.answers if killed_second < when < restarted_second]
    assert len(alone) >= 3, client.answers
