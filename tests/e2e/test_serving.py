"""Serving and the UI: real servers on 127.0.0.1, real HTTP requests."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from digit_recognizer.cli import main
from digit_recognizer.config import load_params
from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS
from digit_recognizer.stages.promote import promote
from tests.helpers.pictures import (
    GeneratedPicture,
    multipart,
    one_bit_png,
    png_bytes,
    seven,
    valid_pictures,
)
from tests.helpers.project import REPOSITORY, copy_data_stage_outputs, write_tiny_project
from tests.helpers.registry import register_candidate
from tests.helpers.servers import free_port, wait_for

DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


def request(
    url: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, str]:
    call = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def start(
    command: list[str], cwd: Path, health_url: str, environment: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    environment = {**(environment or os.environ), "PYTHONPATH": str(REPOSITORY / "src")}
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(health_url, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


def split_payload(
    rows: list[list[int]] | list[list[str]], columns: list[str] | None = None
) -> bytes:
    return json.dumps(
        {"dataframe_split": {"columns": columns or list(PIXEL_COLUMNS), "data": rows}}
    ).encode()


def request_with_headers(
    url: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, str, dict[str, str]]:
    call = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            headers = {key.lower(): value for key, value in response.headers.items()}
            return response.status, response.read().decode(), headers
    except urllib.error.HTTPError as error:
        headers = {key.lower(): value for key, value in error.headers.items()}
        return error.code, error.read().decode(), headers


def serve_params(section: str = "serve", **values: object) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params[section].update(values)
    Path("params.yaml").write_text(yaml.safe_dump(params))


def ann_to_predict_with(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered ANN version in a store of its own (the project's data stages have run)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'predict.db'}")
    return str(register_candidate(project, "ann", []).version)


def serve_new_champion(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    max_request_bytes: int = 100_000,
) -> tuple[str, subprocess.Popen[bytes]]:
    """`digits serve` on a newly promoted champion (the project's data stages have run): its
    base URL and its process."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'serving.db'}")
    serve_params(max_request_bytes=max_request_bytes, poll_seconds=0.5)
    version = register_candidate(project, "cnn", range(10)).version
    assert (
        promote(load_params(Path("params.yaml")), project, version=version).decision == "promoted"
    )
    port = free_port()
    process = start(
        [*DIGITS, "serve", "--port", str(port)], project, f"http://127.0.0.1:{port}/ping"
    )
    return f"http://127.0.0.1:{port}", process


@pytest.fixture(scope="module")
def served_champion(tmp_path_factory: pytest.TempPathFactory, prepared_tiny: Path) -> Iterator[str]:
    """`digits serve` on a promoted champion, shared by the tests that only send it requests
    (starting one takes most of a minute); its base URL."""
    folder = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as patch:
        write_tiny_project(folder)
        copy_data_stage_outputs(prepared_tiny, folder)
        patch.chdir(folder)
        url, process = serve_new_champion(folder, folder, patch)
    yield url
    stop(process)


CSV_HEADER = ",".join(PIXEL_COLUMNS)


@pytest.mark.slow
def test_served_champion_answers_every_input_form_and_names_its_version(
    served_champion: str,
) -> None:
    invocations = f"{served_champion}/invocations"
    # a client that keeps its connection open is not kept waiting for its own delayed ACK
    # (~40 ms an answer while a worker's sockets had Nagle's algorithm on)
    host, port = served_champion.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    round_trips = []
    for _ in range(11):
        started = time.perf_counter()
        connection.request("GET", "/ping")
        connection.getresponse().read()
        round_trips.append(time.perf_counter() - started)
    connection.close()
    assert statistics.median(round_trips) < 0.02, round_trips
    # JSON dataframe_split with the Kaggle columns
    status, body, headers = request_with_headers(
        invocations, split_payload([[0] * 784, [255] * 784])
    )
    assert status == 200, body
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == {
        "label",
        *(f"prob_{d}" for d in range(10)),
    }
    assert abs(sum(predictions[0][f"prob_{d}"] for d in range(10)) - 1) < 1e-4
    assert headers["x-model-version"] == "1"
    # JSON inputs / instances arrays, and CSV with the Kaggle header
    for payload, content_type in (
        (json.dumps({"inputs": [[7] * 784]}).encode(), "application/json"),
        (json.dumps({"instances": [[7] * 784, [8] * 784]}).encode(), "application/json"),
        (f"{CSV_HEADER}\n{','.join(['3'] * 784)}\n".encode(), "text/csv"),
    ):
        status, body, headers = request_with_headers(invocations, payload, content_type)
        assert status == 200 and headers["x-model-version"] == "1", body
        assert "predictions" in json.loads(body)
    # and it says what it serves
    status, body = request(f"{served_champion}/model")
    assert json.loads(body) == {"name": "digit-recognizer", "version": "1", "alias": "champion"}


def bad_payloads() -> dict[str, tuple[bytes, str]]:
    row = [0] * 784
    json_type, csv_type = "application/json", "text/csv"
    return {
        "783 columns": (split_payload([[0] * 783], list(PIXEL_COLUMNS[:783])), json_type),
        "785 values": (json.dumps({"inputs": [[0] * 785]}).encode(), json_type),
        "pixel 300": (split_payload([[0] * 783 + [300]]), json_type),
        "pixel -1": (json.dumps({"inputs": [[-1, *row[1:]]]}).encode(), json_type),
        "pixel 0.5": (json.dumps({"inputs": [[0.5, *row[1:]]]}).encode(), json_type),
        "huge float": (b'{"inputs": [[1e400' + b", 0" * 783 + b"]]}", json_type),
        "NaN": (json.dumps({"inputs": [[float("nan"), *row[1:]]]}).encode(), json_type),
        "null pixel": (json.dumps({"inputs": [[None, *row[1:]]]}).encode(), json_type),
        "strings": (split_payload([["x"] * 784]), json_type),
        "empty rows": (split_payload([]), json_type),
        "empty inputs": (json.dumps({"inputs": []}).encode(), json_type),
        "3-d inputs": (json.dumps({"inputs": [[row]]}).encode(), json_type),
        "scalar inputs": (json.dumps({"inputs": 5}).encode(), json_type),
        "unknown key": (json.dumps({"pixels": [row]}).encode(), json_type),
        "two formats": (json.dumps({"inputs": [row], "instances": [row]}).encode(), json_type),
        "top-level list": (json.dumps([row]).encode(), json_type),
        "malformed JSON": (b"{nope", json_type),
        "empty body": (b"", json_type),
        "not UTF-8": (b'{"inputs": "\xff\xfe"}', json_type),
        "text/plain": (json.dumps({"inputs": [row]}).encode(), "text/plain"),
        "xml": (b"<digits/>", "application/xml"),
        "latin-1 charset": (
            json.dumps({"inputs": [row]}).encode(),
            f"{json_type}; charset=latin-1",
        ),
        "CSV wrong header": (b"a,b\n1,2\n", csv_type),
        "CSV strings": (f"{CSV_HEADER}\n{','.join(['x'] * 784)}\n".encode(), csv_type),
        "CSV ragged": (f"{CSV_HEADER}\n1,2,3\n".encode(), csv_type),
        "CSV empty": (b"", csv_type),
        "over the size limit": (json.dumps({"inputs": [row] * 60}).encode(), json_type),
        "columns not a list": (
            json.dumps({"dataframe_split": {"columns": 1, "data": [row]}}).encode(),
            json_type,
        ),
        "deeply nested": (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", json_type),
        "unreadable picture": (b"\x89PNG not really", "image/png"),
        "blank picture": (png_bytes(np.full((64, 64), 255, dtype=np.uint8)), "image/png"),
        "multipart without boundary": (b"--x\r\n\r\n", "multipart/form-data"),
        "multipart bad part": (
            multipart([("one.png", png_bytes(seven())), ("two.png", b"garbage")])[0],
            multipart([])[1],
        ),
    }


@pytest.mark.slow
def test_pictures_are_answered_like_rows_and_the_page_shows_what_the_model_saw(
    served_champion: str,
) -> None:
    invocations = f"{served_champion}/invocations"
    # given a picture of a 7 as PNG and as JPEG, then both in one multipart request
    for content_type, body in (
        ("image/png", png_bytes(seven())),
        ("image/jpeg", png_bytes(seven(), "JPEG")),
        multipart([("a.png", png_bytes(seven())), ("b.png", png_bytes(255 - seven()))])[::-1],
    ):
        status, answer, headers = request_with_headers(invocations, body, content_type)
        # then the answer has the Kaggle rows' format and names the version
        assert status == 200, f"{content_type}: {answer[:300]}"
        predictions = json.loads(answer)["predictions"]
        assert set(predictions[0]) == {"label", *(f"prob_{digit}" for digit in range(10))}
        assert len(predictions) == (2 if content_type.startswith("multipart") else 1)
        assert headers["x-model-version"] == "1"
    # and /explain shows the page what the model saw: the MNIST frame, centred
    status, answer, headers = request_with_headers(
        f"{served_champion}/explain", png_bytes(seven()), "image/png"
    )
    assert status == 200 and headers["x-model-version"] == "1", answer[:300]
    explained = json.loads(answer)
    assert explained["version"] == "1" and len(explained["probabilities"]) == 10
    frame = np.asarray(explained["pixels"]).reshape(28, 28)
    assert frame.max() == 255 and frame[:, :3].max() == 0 and frame[:, -3:].max() == 0
    assert explained["label"] == int(np.argmax(explained["probabilities"]))
    # and a bad part is named
    body, content_type = multipart([("one.png", png_bytes(seven())), ("two.png", b"garbage")])
    status, answer = request(invocations, body, content_type)
    assert status == 400 and "part 2 (two.png)" in answer, answer
    # and the page is served, self-contained (no address outside the server)
    status, page = request(f"{served_champion}/")
    assert status == 200 and "<canvas" in page and "http" not in page.replace("https://", "")


@pytest.mark.slow
def test_a_chunked_body_over_the_limit_gets_413_and_a_bom_csv_is_read(
    served_champion: str,
) -> None:
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(served_champion)
    connection = http.client.HTTPConnection(address.netloc, timeout=30)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"[" * 10_000
    try:
        for _ in range(30):  # 300 KB, over the test's 100 KB limit, no Content-Length
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and close before the body ends
    assert connection.getresponse().status == 413
    connection.close()
    body = f"\ufeff{CSV_HEADER}\n{','.join(['3'] * 784)}\n".encode()
    assert request(f"{served_champion}/invocations", body, "text/csv")[0] == 200


@pytest.mark.slow
def test_bad_requests_get_a_4xx_with_a_reason_and_never_take_the_server_down(
    served_champion: str,
) -> None:
    invocations = f"{served_champion}/invocations"
    payloads = bad_payloads()
    assert len(payloads) >= 20
    for name, (payload, content_type) in payloads.items():
        status, body = request(invocations, payload, content_type)
        assert 400 <= status < 500, f"{name}: HTTP {status} {body[:300]}"
        assert body.strip(), f"{name}: no reason given"
    assert request(invocations, payloads["over the size limit"][0])[0] == 413
    # and the server still answers
    assert request(invocations, split_payload([[1] * 784]))[0] == 200


@pytest.fixture
def moving_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared_project: Path
) -> Iterator[str]:
    """`digits serve` on a champion of its own, for a test that moves the alias (the one the
    other tests share must stay as it is); its base URL."""
    url, process = serve_new_champion(prepared_project, tmp_path, monkeypatch)
    yield url
    stop(process)


@pytest.mark.slow
def test_a_running_server_follows_promotion_and_rollback_without_dropping_requests(
    moving_champion: str, project: Path
) -> None:
    invocations = f"{moving_champion}/invocations"
    answers: list[tuple[float, int, str]] = []
    stop_sending = threading.Event()

    def send() -> None:  # a client that never pauses, bounded in time
        deadline = time.monotonic() + 240
        while not stop_sending.is_set() and time.monotonic() < deadline:
            status, _, headers = request_with_headers(invocations, split_payload([[5] * 784]))
            answers.append((time.monotonic(), status, headers.get("x-model-version", "")))

    def first_answer_by(version: str, since: float) -> float:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for at, _, served in list(answers):
                if at > since and served == version:
                    return at
            time.sleep(0.1)
        raise AssertionError(f"version {version} never answered; last: {answers[-3:]}")

    client = threading.Thread(target=send)
    client.start()
    try:
        # when a better version is promoted while the server answers
        better = register_candidate(project, "cnn", range(2)).version
        moved = time.monotonic()
        assert main(["promote", "--version", better]) == 0
        # then the server switches to it within the poll interval (plus loading the model)
        assert first_answer_by(better, moved) - moved < 0.5 + 15, "the switch took too long"
        # and a rollback switches it back
        moved = time.monotonic()
        assert main(["rollback"]) == 0
        first_answer_by("1", moved)
    finally:
        stop_sending.set()
        client.join(timeout=60)
    assert answers and {status for _, status, _ in answers} == {200}, "no request was dropped"
    # each worker polls the alias on its own: soon every answer is version 1 again
    deadline, in_a_row = time.monotonic() + 30, 0
    while time.monotonic() < deadline and in_a_row < 10:
        served = json.loads(request(f"{moving_champion}/model")[1])["version"]
        in_a_row = in_a_row + 1 if served == "1" else 0
        time.sleep(0.1)
    assert in_a_row == 10, "a worker still serves the rolled-back version"


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_mlflow_ui_serves_the_project_store(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a store with a run, selected by the project (no MLFLOW_TRACKING_URI)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
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


@pytest.mark.usefixtures("prepared_project")
def test_predict_writes_a_submission_from_csv_and_png(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    project: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    version = ann_to_predict_with(project, tmp_path, monkeypatch)
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
    # from any mix of CSVs and pictures, in the order given
    Image.fromarray(seven()).convert("RGB").save(tmp_path / "seven.jpg", quality=90)
    mixed = ["data/test.csv", str(tmp_path / "seven.jpg"), str(tmp_path / "one.png")]
    arguments = ["--version", version, "--output", "out/mixed.csv"]
    assert main(["predict", "--input", *mixed, *arguments]) == 0
    assert len(Path("out/mixed.csv").read_text().splitlines()) == 1 + 40 + 2
    # a bad picture is named in one line, and nothing is written
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    capsys.readouterr()
    broken = ["--input", str(tmp_path / "seven.jpg"), str(tmp_path / "broken.png")]
    assert main(["predict", *broken, "--version", version, "--output", "out/bad.csv"]) == 2
    error = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'broken.png'}: not a picture that can be read" in error, error
    assert "\n" not in error and not Path("out/bad.csv").exists()
    # without a champion, the default fails clearly
    assert main(["predict", "--input", "data/test.csv"]) == 2


def generated_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    """Bodies a careless or hostile client sends: JSON of any shape (some in the Kaggle
    forms), CSV-like text, and raw bytes, each under a content type the server reads."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    documents = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=20,
    )
    kaggle_forms = st.one_of(
        documents.map(lambda content: {"inputs": content}),
        documents.map(lambda content: {"instances": content}),
        st.fixed_dictionaries({"columns": documents, "data": documents}).map(
            lambda content: {"dataframe_split": content}
        ),
        documents,
    )
    json_bodies = kaggle_forms.map(
        lambda document: (json.dumps(document).encode(), "application/json")
    )
    csv_bodies = st.lists(
        st.lists(st.sampled_from(["0", "255", "-1", "x", "", "1e3", '"7"', "pixel0"]), max_size=6),
        max_size=5,
    ).map(lambda rows: ("\n".join(",".join(row) for row in rows).encode(), "text/csv"))
    raw_bodies = st.tuples(
        st.binary(max_size=300),
        st.sampled_from(
            [
                "image/png",
                "image/jpeg",
                "multipart/form-data; boundary=x",
                "multipart/form-data",
                "application/json",
                "text/csv",
            ]
        ),
    )
    return json_bodies | csv_bodies | raw_bodies


@pytest.mark.slow
def test_no_generated_body_gets_a_5xx(served_champion: str) -> None:
    # a fixed, bounded set of examples (derandomized), all on loopback
    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(generated_bodies())
    def answers_without_a_server_error(body: tuple[bytes, str]) -> None:
        status, answer = request(f"{served_champion}/invocations", body[0], body[1])
        assert status < 500, f"HTTP {status} for {body[1]} {body[0][:200]!r}: {answer[:300]}"

    answers_without_a_server_error()

    # and valid pictures of every shape, degenerate ones included: an answer or a 4xx
    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(valid_pictures())
    def pictures_answered_without_a_server_error(picture: GeneratedPicture) -> None:
        # the byte limit is refused before the body is read (tested apart): urllib, which
        # reads no answer while it sends, would see the connection close
        assume(len(picture.content) <= 100_000)
        status, answer = request(
            f"{served_champion}/invocations", picture.content, picture.content_type
        )
        assert status < 500, f"HTTP {status} for {picture.description}: {answer[:300]}"

    pictures_answered_without_a_server_error()


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_predict_reads_or_refuses_every_valid_picture_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    project: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    version = ann_to_predict_with(project, tmp_path, monkeypatch)

    @settings(max_examples=30, deadline=None, derandomize=True, database=None)
    @given(valid_pictures())
    def read_or_refused(picture: GeneratedPicture) -> None:
        path = tmp_path / f"generated.{picture.content_type.split('/')[1]}"
        path.write_bytes(picture.content)
        output = tmp_path / "out.csv"
        output.unlink(missing_ok=True)
        capsys.readouterr()
        status = main(
            ["predict", "--input", str(path), "--version", version, "--output", str(output)]
        )
        error = capsys.readouterr().err.strip()
        if status == 0:
            assert len(output.read_text().splitlines()) == 2, picture.description
        else:
            # one line naming the file, and nothing written
            assert status == 2 and not output.exists(), picture.description
            assert error.startswith(f"digits predict: error: {path}: ") and "\n" not in error, error

    read_or_refused()


def parquet_rows(count: int) -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame(np.zeros((count, 784), dtype=np.int64), columns=list(PIXEL_COLUMNS)).to_parquet(
        buffer
    )
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_work_is_budgeted_overload_is_answered_and_other_sites_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    # given a server with small budgets, two concurrent requests per worker, one trusted site
    serve_params(
        max_request_megapixels=40,
        max_parts=8,
        max_rows=3,
        max_concurrent_requests=1,
        workers=1,
        allowed_origins=["https://digits.example"],
    )
    base, process = serve_new_champion(project, tmp_path, monkeypatch)
    invocations = f"{base}/invocations"
    row = [0] * 784
    try:
        refused = {
            "pixels summed over parts": multipart([("big.png", one_bit_png(4000))] * 3),
            "parts": multipart([("seven.png", png_bytes(seven()))] * 9),
            "rows": (json.dumps({"inputs": [row] * 4}).encode(), "application/json"),
            "CSV rows": (
                (f"{CSV_HEADER}\n" + "\n".join([",".join(["0"] * 784)] * 4)).encode(),
                "text/csv",
            ),
            "parquet": (parquet_rows(20), "application/vnd.apache.parquet"),
            "a 1 x 3 picture": (
                png_bytes(np.array([[255, 0, 255]], dtype=np.uint8)),
                "image/png",
            ),
        }
        expected = {"parquet": (415, "is not read here")}
        for what, (body, content_type) in refused.items():
            status, answer = request(invocations, body, content_type)
            want_status, want_text = expected.get(what, (400, "over the limit"))
            if what == "a 1 x 3 picture":
                want_text = "too small to hold a digit"
            assert status == want_status and want_text in answer, (what, status, answer)
        # then within budget everything is still answered
        status, _ = request(invocations, *multipart([("seven.png", png_bytes(seven()))] * 8))
        assert status == 200

        # when another site's page posts, it is refused; the server's own page and the
        # trusted site are not
        def posted_from(origin: str) -> int:
            call = urllib.request.Request(
                invocations,
                data=json.dumps({"inputs": [row]}).encode(),
                headers={"Content-Type": "application/json", "Origin": origin},
            )
            try:
                with urllib.request.urlopen(call, timeout=30) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return int(error.code)

        assert posted_from("https://elsewhere.example") == 403
        assert posted_from("null") == 403
        assert posted_from(base) == 200
        assert posted_from("https://digits.example") == 200

        # when more requests arrive at once than the worker answers, the rest get 503 at once
        slow = multipart([("seven.png", png_bytes(seven(400)))] * 8)
        answers: list[tuple[int, str | None]] = []

        def send() -> None:
            call = urllib.request.Request(
                invocations, data=slow[0], headers={"Content-Type": slow[1]}
            )
            try:
                with urllib.request.urlopen(call, timeout=60) as response:
                    answers.append((response.status, None))
            except urllib.error.HTTPError as error:
                answers.append((error.code, error.headers.get("Retry-After")))

        senders = [threading.Thread(target=send) for _ in range(8)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=90)
        # then every one is answered: 200, or 503 with Retry-After, nothing else, none hanging
        assert len(answers) == 8, answers
        assert {status for status, _ in answers} <= {200, 503}, answers
        assert any(status == 503 for status, _ in answers), answers
        assert all(retry == "1" for status, retry in answers if status == 503), answers
        assert request(f"{base}/ping")[0] == 200
    finally:
        stop(process)


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_a_request_past_its_deadline_has_its_work_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    # given a server whose requests have 1 s, and 64 pictures of 16 megapixels each: within
    # every other budget, and seconds of work to read them all
    serve_params(request_timeout_seconds=1.0, max_request_megapixels=2000, max_parts=64, workers=1)
    base, process = serve_new_champion(project, tmp_path, monkeypatch, max_request_bytes=2_000_000)
    invocations = f"{base}/invocations"
    buffer = io.BytesIO()
    Image.fromarray(seven(4000)).convert("1").save(buffer, "PNG")
    try:
        assert request(invocations, *multipart([("seven.png", png_bytes(seven()))] * 2))[0] == 200
        # when they are sent
        started = time.monotonic()
        status, answer = request(invocations, *multipart([("big.png", buffer.getvalue())] * 64))
        elapsed = time.monotonic() - started
        # then the answer is a 503 naming the setting, given when the work stopped (a picture
        # or so past the second), not when it would have ended
        assert status == 503 and "serve.request_timeout_seconds" in answer, (status, answer)
        assert elapsed < 3.0, elapsed
        assert request(invocations, *multipart([("seven.png", png_bytes(seven()))] * 2))[0] == 200

        # when a client sends a body's first bytes and then nothing, it gets 408 at the deadline
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: text/csv\r\nContent-Length: 1000\r\n\r\npixel0,"
            )
            # the head and the body may come in separate segments: read the whole answer
            reply = http.client.HTTPResponse(connection)
            reply.begin()
            body = reply.read().decode()
        assert reply.status == 408 and "did not arrive within 1 s" in body, (reply.status, body)
    finally:
        stop(process)
