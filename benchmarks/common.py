"""What the benchmarks share: a `digits serve` of their own, and the generated blocks they
write into the docs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from digit_recognizer.files import write_json
from digit_recognizer.monitoring.log import PredictionLog
from digit_recognizer.runtime.cpu import cpu_model

DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


class Server:
    """`digits serve` with its own params file and log (beside, never the project's log)."""

    def __init__(
        self,
        root: Path,
        folder: Path,
        name: str,
        serve: dict[str, Any] | None = None,
        **monitoring: Any,
    ) -> None:
        raw = yaml.safe_load((root / "params.yaml").read_text())
        raw["serve"]["workers"] = monitoring.pop("workers", 1)
        raw["serve"].update(serve or {})
        raw["monitoring"].update(monitoring)
        params_file = folder / f"{name}.yaml"
        params_file.write_text(yaml.safe_dump(raw))
        self.log_url = f"sqlite:///{folder / name}.db"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/invocations"
        environment = {**os.environ, "DIGITS_PREDICTION_LOG_URL": self.log_url}
        self.process = subprocess.Popen(
            [*DIGITS, "--params", str(params_file), "serve", "--port", str(self.port)],
            cwd=root,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=5)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"digits serve on port {self.port} did not start")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=120)

    def records(self) -> int:
        return PredictionLog(self.log_url).count()


def write_report(root: Path, name: str, results: dict[str, Any]) -> Path:
    """reports/benchmarks/NAME.json, the CPU named; `python -m benchmarks.pages` lists it."""
    output = root / "reports" / "benchmarks" / f"{name}.json"
    write_json(output, {"cpu": cpu_model(), "cores": os.cpu_count(), **results})
    return output
