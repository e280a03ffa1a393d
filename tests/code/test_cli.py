"""The command line: fast help without TensorFlow, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from digit_recognizer.cli import main
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
