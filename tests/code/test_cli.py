"""The command line: fast help without TensorFlow, one-line errors, no tracebacks."""

from __future__ import annotations

import contextlib
import http.server
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from digit_recognizer.cli import main
from digit_recognizer.config import TeamServerConfig
from digit_recognizer.team.state import StatePaths
from digit_recognizer.team.tls import server_certificate
from tests.helpers.project import REPOSITORY
from tests.helpers.servers import free_port

DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


def test_help_does_not_import_heavy_libraries() -> None:
    probe = (
        "import sys; from digit_recognizer.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [name for name in ('tensorflow', 'keras', 'mlflow', 'sklearn')\n"
        "         if name in sys.modules]\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "prepare" in result.stdout


def test_mlflow_telemetry_is_off_in_a_users_shell(tmp_path: Path) -> None:
    # given a user's shell, without the CI or pytest variables by which MLflow turns it off
    # itself (its thread edits os.environ while requests reads it: stages failed on a KeyError)
    probe = (
        "from digit_recognizer.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "assert is_telemetry_disabled()"
    )
    shell = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    # when any digits command starts, then MLflow's telemetry is off
    result = subprocess.run(
        [sys.executable, "-c", probe], env=shell, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_bad_params_file_is_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("seed: 1\nprepare:\n  split: 0.2\n")
    result = subprocess.run(
        [*DIGITS, "prepare"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY / "src")},
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "digits prepare: error: params.yaml: unknown key 'prepare.split'"
    )


def test_a_registry_that_does_not_answer_is_named_not_taken_for_no_champion(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a tracking server that is down (no retries: the test need not wait them out)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # when the monitor asks for the champion
    assert main(["monitor"]) == 2
    # then it says the server did not answer, not that there is no champion
    error = capsys.readouterr().err.strip()
    assert "unreachable" in error and "has no @champion" not in error, error
    assert "\n" not in error


class AlwaysUnavailable(http.server.BaseHTTPRequestHandler):
    """A tracking server that answers, but only with 503 (overloaded, or its store is down)."""

    def do_GET(self) -> None:
        self.send_error(503)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def answering_503(context: ssl.SSLContext | None = None) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AlwaysUnavailable)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_answers_only_errors_or_an_untrusted_certificate_is_named_as_such(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # given a tracking server that answers 503 to everything
    with answering_503() as port:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        # when the monitor asks it for the champion
        assert main(["monitor"]) == 2
    # then the one line says what it answered, not that nothing answered
    error = capsys.readouterr().err.strip()
    assert "answered HTTP 503 to every retry" in error and "\n" not in error, error
    # given an HTTPS server whose certificate this machine does not trust
    state = StatePaths(tmp_path / "state")
    certificate = server_certificate(TeamServerConfig(), state, tmp_path, "127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.certificate, certificate.key)
    with answering_503(context) as port:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://127.0.0.1:{port}")
        assert main(["monitor"]) == 2
    # then the line names the certificate, not a server that is down
    error = capsys.readouterr().err.strip()
    assert "TLS failed" in error and "\n" not in error, error
