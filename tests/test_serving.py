"""Serving and the UI: real servers on 127.0.0.1, real HTTP requests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digit_recognizer.cli import main
from digit_recognizer.config import load_params
from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS
from digit_recognizer.registry import promote
from tests.conftest import REPOSITORY
from tests.registry_fixtures import register_candidate

DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(
    url: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, str]:
    call = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def start(command: list[str], cwd: Path, health_url: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src")}
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{command} exited with {process.returncode}"
        try:
            if request(health_url)[0] == 200:
                return process
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"{command} did not answer {health_url} in time")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


def split_payload(
    rows: list[list[int]] | list[list[str]], columns: list[str] | None = None
) -> bytes:
    return json.dumps(
        {"dataframe_split": {"columns": columns or list(PIXEL_COLUMNS), "data": rows}}
    ).encode()


@pytest.fixture
def served_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> Iterator[str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'serving.db'}")
    assert main(["prepare"]) == 0
    version = register_candidate(project, "cnn", []).version
    assert (
        promote(load_params(Path("params.yaml")), project, version=version).decision == "promoted"
    )
    port = free_port()
    process = start(
        [*DIGITS, "serve", "--port", str(port)], project, f"http://127.0.0.1:{port}/ping"
    )
    yield f"http://127.0.0.1:{port}/invocations"
    stop(process)


@pytest.mark.slow
def test_served_champion_answers_kaggle_rows_and_refuses_bad_payloads(served_champion: str) -> None:
    # a good request: two Kaggle rows as JSON dataframe_split
    status, body = request(served_champion, split_payload([[0] * 784, [255] * 784]))
    assert status == 200, body
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == {
        "label",
        *(f"prob_{d}" for d in range(10)),
    }
    assert abs(sum(predictions[0][f"prob_{d}"] for d in range(10)) - 1) < 1e-4
    # the same rows as CSV
    csv_body = (",".join(PIXEL_COLUMNS) + "\n" + ",".join(["3"] * 784) + "\n").encode()
    assert request(served_champion, csv_body, "text/csv")[0] == 200
    # malformed payloads: 4xx with a message, never a 500
    bad_payloads = {
        "wrong width": split_payload([[0] * 783], list(PIXEL_COLUMNS[:783])),
        "pixel out of range": split_payload([[0] * 783 + [300]]),
        "strings": split_payload([["x"] * 784]),
        "empty": split_payload([]),
        "not json": b"{nope",
    }
    for name, payload in bad_payloads.items():
        status, body = request(served_champion, payload)
        assert 400 <= status < 500, f"{name}: HTTP {status} {body[:300]}"
        assert body, name


@pytest.mark.slow
def test_mlflow_ui_serves_the_project_store(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a store with a run, selected by the project (no MLFLOW_TRACKING_URI)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert main(["prepare"]) == 0
    register_candidate(project, "ann", [])
    port = free_port()
    process = start(
        [*DIGITS, "ui", "--port", str(port)], project, f"http://127.0.0.1:{port}/health"
    )
    try:
        status, page = request(f"http://127.0.0.1:{port}/")
        assert status == 200 and "<html" in page.lower()
        status, body = request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
            json.dumps({"max_results": 10}).encode(),
        )
        experiments = {
            item["name"]: item["experiment_id"] for item in json.loads(body)["experiments"]
        }
        status, body = request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
            json.dumps({"experiment_ids": [experiments["digit-recognizer"]]}).encode(),
        )
        runs = json.loads(body)["runs"]
        assert any(run["data"]["tags"] and run["info"]["status"] == "FINISHED" for run in runs)
    finally:
        stop(process)


def test_predict_writes_a_submission_from_csv_and_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'predict.db'}")
    assert main(["prepare"]) == 0
    version = register_candidate(project, "ann", []).version
    # from the test CSV with a named version
    assert (
        main(
            [
                "predict",
                "--input",
                "data/test.csv",
                "--version",
                version,
                "--output",
                "out/submission.csv",
            ]
        )
        == 0
    )
    lines = Path("out/submission.csv").read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 41 and lines[1].startswith("1,")
    # from PNG images (dark ink on white paper is inverted like MNIST)
    image = np.full((56, 56), 255, dtype=np.uint8)
    image[10:46, 26:30] = 0
    Image.fromarray(image).save(tmp_path / "one.png")
    assert (
        main(
            [
                "predict",
                "--input",
                str(tmp_path / "one.png"),
                "--version",
                version,
                "--output",
                "out/png.csv",
            ]
        )
        == 0
    )
    assert Path("out/png.csv").read_text().splitlines()[0] == "ImageId,Label"
    # without a champion, the default fails clearly
    assert main(["predict", "--input", "data/test.csv"]) == 2
