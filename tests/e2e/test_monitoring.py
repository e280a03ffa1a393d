"""The loop after deployment against real servers and stores: every answer of `digits serve`
logged with its id, counted in /metrics, corrected through /feedback, kept across SIGTERM;
`digits monitor` and `digits feedback` on the log that the server wrote."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from digit_recognizer.cli import main
from digit_recognizer.config import load_params
from digit_recognizer.data.kaggle_csv import read_digits_csv
from digit_recognizer.data.splits import evaluation_split
from digit_recognizer.monitoring.commands import EXIT_ALERT, MONITORING_EXPERIMENT
from digit_recognizer.monitoring.log import (
    AnswerBatch,
    PredictionLog,
    log_url,
    new_prediction_ids,
)
from tests.e2e.test_serving import (
    request,
    request_with_headers,
    serve_new_champion,
    serve_params,
    split_payload,
)


def project_log(project: Path) -> PredictionLog:
    return PredictionLog(log_url(load_params(project / "params.yaml").monitoring, project))


def png_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def feedback(base: str, body: object) -> tuple[int, str]:
    return request(f"{base}/feedback", json.dumps(body).encode())


def metric(exposition: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus' text format (summed over worker labels)."""
    total, found = 0.0, False
    for line in exposition.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        sample = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(sample.get(key) == value for key, value in labels.items()):
            total, found = total + float(match.group(3)), True
    assert found, f"no {name}{labels} in /metrics"
    return total


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_every_answer_is_logged_counted_and_can_be_corrected(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the champion served, with the log on
    base, process = serve_new_champion(project, tmp_path, monkeypatch)
    digits = evaluation_split(project / "prepared")[1].images
    try:
        # when rows, a picture and the page's picture are answered
        status, body, headers = request_with_headers(
            f"{base}/invocations", split_payload(digits[:3].tolist())
        )
        assert status == 200, body
        row_ids = headers["x-prediction-id"].split(",")
        status, _, headers = request_with_headers(
            f"{base}/invocations", png_of(digits[3]), "image/png"
        )
        picture_id = headers["x-prediction-id"]
        status, body = request(f"{base}/explain", png_of(digits[4]), "image/png")
        page_answer = json.loads(body)
        # then each row has its own id, returned to the client
        ids = [*row_ids, picture_id, page_answer["prediction_id"]]
        assert len(set(ids)) == 5 and all(re.fullmatch(r"[0-9a-f]{32}", key) for key in ids)
        # and people's labels are taken, and bad ones refused with the right status
        assert feedback(base, {"prediction_id": row_ids[0], "label": 7})[0] == 204
        assert feedback(base, {"prediction_id": row_ids[0], "label": 3})[0] == 204
        assert feedback(base, {"prediction_id": page_answer["prediction_id"], "label": 1})[0] == 204
        status, body = feedback(base, {"prediction_id": "f" * 32, "label": 1})
        assert status == 404 and "no answer with prediction id" in body
        status, body = feedback(base, {"prediction_id": row_ids[1], "label": 10})
        assert status == 400 and "label must be a digit 0-9" in body
        status, body = request(f"{base}/feedback", b"{nope")
        assert status == 400 and "not JSON" in body
        # and /metrics counts requests by kind and status, answers, the version, drops
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            scraped = response.read().decode()
        assert metric(scraped, "digits_requests_total", kind="json", status="200") == 1
        assert metric(scraped, "digits_requests_total", kind="picture", status="200") == 1
        assert metric(scraped, "digits_requests_total", kind="page", status="200") == 1
        assert metric(scraped, "digits_requests_total", kind="feedback", status="204") == 3
        assert metric(scraped, "digits_requests_total", kind="feedback", status="404") == 1
        assert metric(scraped, "digits_request_latency_seconds_count", kind="json") == 1
        assert metric(scraped, "digits_answers_total") == 5  # summed over the digits
        assert metric(scraped, "digits_top_probability_count") == 5
        assert metric(scraped, "digits_prediction_log_dropped_total") == 0
        assert metric(scraped, "digits_served_version") >= 1
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    # and the log holds the five answers with the pixels the model saw, and the newest labels
    log = project_log(project)
    window = log.window(since=None, last=None)
    assert sorted(window.prediction_ids) == sorted(ids)
    assert sorted(window.input_kinds) == ["json", "json", "json", "page", "picture"]
    assert set(window.versions) == {"1"}
    first = window.prediction_ids.index(row_ids[0])
    assert np.array_equal(window.pixels[first], digits[0])
    assert window.corrected == {row_ids[0]: 3, page_answer["prediction_id"]: 1}


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_sigterm_writes_every_queued_record(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a server whose log would not write for a minute on its own
    serve_params("monitoring", flush_seconds=60.0, batch_size=100_000)
    serve_params(workers=2)
    base, process = serve_new_champion(project, tmp_path, monkeypatch)
    rows = np.random.default_rng(0).integers(0, 256, (20, 784)).tolist()
    try:
        # when 600 rows are answered by its two workers
        for _ in range(30):
            assert request(f"{base}/invocations", split_payload(rows))[0] == 200
    finally:
        # and `digits serve` alone is stopped (kill PID), as a service manager may stop it
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=90)
    # then not one record is lost, and no server process is left behind
    assert project_log(project).count() == 600
    # (a worker that exited with uvicorn stays a zombie until init reaps it: seen for 1.2 s on
    # a quiet machine, longer on a loaded one)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    left = subprocess.run(
        ["ps", "-o", "pid=,args=", "-s", str(process.pid)], capture_output=True, text=True
    ).stdout
    assert not left.strip(), f"left behind: {left}"
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


def insert_answers(log: PredictionLog, version: str, pixels: np.ndarray, start: float) -> list[str]:
    """Records as the server writes them: the champion's own answers to ``pixels``."""
    from digit_recognizer.data.kaggle_csv import pixel_frame
    from digit_recognizer.models.pyfunc import PROBABILITY_COLUMNS

    model = mlflow.pyfunc.load_model(f"models:/digit-recognizer/{version}")
    frame = model.predict(pixel_frame(pixels.astype(np.uint8)))
    probabilities = frame[list(PROBABILITY_COLUMNS)].to_numpy().astype(np.float32)
    answers = AnswerBatch(
        new_prediction_ids(len(pixels)), start, version, "json", probabilities, pixels, 2.0
    )
    log.insert([answers])
    return answers.prediction_ids


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_monitor_reports_to_mlflow_and_exits_3_on_drift_and_feedback_exports(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.helpers.registry import register_candidate

    # given a champion, and a log holding the evaluation digits as they were answered
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'monitor.db'}")
    serve_params("monitoring", min_window_rows=20)
    version = register_candidate(project, "ann", []).version
    assert main(["promote", "--version", version, "--force"]) == 0
    digits = evaluation_split(project / "prepared")[1].images
    log = project_log(project)
    log.create_tables()
    insert_answers(log, version, digits, time.time() - 3600)
    # when monitor reads the newest answers
    assert main(["monitor", "--last", str(len(digits))]) == 0
    output = capsys.readouterr().out
    assert f"monitor: {len(digits)} answers, champion v{version}: no drift" in output
    # and then the same digits inverted arrive (photos of white ink on dark paper)
    inverted_ids = insert_answers(log, version, 255 - digits, time.time() - 60)
    status = main(["monitor", "--last", str(len(digits)), "--output", str(tmp_path / "report")])
    # then it alerts, exits 3 and says so in one line, with a report
    assert status == EXIT_ALERT
    line = capsys.readouterr().out.splitlines()[0]
    assert "ALERT" in line and "pixel_shift" in line, line
    page = (tmp_path / "report" / "monitor.html").read_text()
    assert "pixel_shift" in page and "data:image/png;base64," in page
    # and each check is a run in the monitoring experiment, charted over time in the UI
    experiment = mlflow.get_experiment_by_name(MONITORING_EXPERIMENT)
    assert experiment is not None
    runs = mlflow.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    assert list(runs["tags.alert"]) == ["False", "True"]
    assert runs["metrics.pixel_shift"].iloc[1] > runs["metrics.pixel_shift"].iloc[0]
    artifacts = mlflow.MlflowClient().list_artifacts(runs["run_id"].iloc[1])
    assert {artifact.path for artifact in artifacts} == {"monitor.html", "monitor.png"}
    # and corrections of those answers export as Kaggle train rows
    corrections = tmp_path / "corrections.csv"
    corrections.write_text(
        "prediction_id,label\n" + "".join(f"{key},{i % 10}\n" for i, key in enumerate(inverted_ids))
    )
    assert main(["feedback", "add", "--input", str(corrections)]) == 0
    assert main(["feedback", "export"]) == 0
    exported = read_digits_csv(project / "feedback" / "feedback.csv", require_labels=False)
    assert len(exported.images) == len(digits)
    assert sorted(exported.images.sum(axis=1)) == sorted((255 - digits).sum(axis=1))
    # and a bad corrections file is one line and exit 2
    corrections.write_text("prediction_id,label\nunknown,4\n")
    assert main(["feedback", "add", "--input", str(corrections)]) == 2
    assert "'unknown' in the log; nothing was added" in capsys.readouterr().err
