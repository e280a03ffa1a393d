"""Serving the champion, batch prediction, and the MLflow UI, against the project's own store."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.data.kaggle_csv import read_digits_csv, write_submission
from digit_recognizer.data.pictures import PICTURE_SUFFIXES, PictureLimits, read_picture
from digit_recognizer.errors import UserError
from digit_recognizer.runtime.programs import program, program_environment

# How long a stopped server may take to finish its requests and write its queued records.
SHUTDOWN_SECONDS = 60.0


@dataclass(frozen=True)
class ServerCommand:
    argv: list[str]
    environment: dict[str, str]
    page: str | None = None  # what to open once it answers (printed; opened where a display is)


def run_server(command: ServerCommand) -> None:
    """Run a server in the foreground until it exits or Ctrl-C / SIGTERM, which are passed on
    as SIGTERM so that it finishes its requests and writes its queued records; a crash is one
    line."""
    import subprocess

    print(" ".join(command.argv), file=sys.stderr, flush=True)
    process = subprocess.Popen(command.argv, env=command.environment)
    if command.page:
        print(f"open {command.page}", flush=True)
        threading.Thread(target=_open_when_up, args=(command.page,), daemon=True).start()
    try:
        returncode = process.wait()
    except KeyboardInterrupt:  # the CLI turns SIGTERM into this too
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return
    if returncode not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise UserError(f"{command.argv[0]} exited with status {returncode}")


def _open_when_up(page: str) -> None:
    """Open ``page`` in the user's browser once the server answers, where there is a display
    (on a server, a terminal browser would take over the terminal)."""
    import urllib.request
    import webbrowser

    if not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin"
    ):
        return
    health = page.split("#", 1)[0].rstrip("/") + "/health"
    for _ in range(120):
        try:
            with urllib.request.urlopen(health, timeout=2):
                webbrowser.open(page)
                return
        except OSError:
            time.sleep(0.5)


def ui_page(host: str, port: int, experiment_id: str) -> str:
    """The experiment's training runs in the MLflow UI: MLflow 3 opens an experiment on its
    GenAI overview unless the link asks for the machine-learning view."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def model_uri(params: Params, version: str | None) -> str:
    name = params.mlflow.registered_model_name
    if version:
        return tracking.version_uri(name, version)
    return tracking.alias_uri(name, tracking.CHAMPION)


def _environment(store: tracking.Store) -> dict[str, str]:
    # mlflow's local env-manager runs programs from this environment
    return program_environment(MLFLOW_TRACKING_URI=store.uri)


def serve_command(params: Params, root: Path, version: str | None, port: int) -> ServerCommand:
    """MLflow's scoring app under uvicorn, following ``@champion`` unless a version is pinned."""
    from digit_recognizer.monitoring.log import PredictionLog, log_url
    from digit_recognizer.monitoring.metrics import MULTIPROCESS_VARIABLE
    from digit_recognizer.serving.following import ServedModel
    from digit_recognizer.serving.recording import LogSettings

    store = tracking.Store.for_project(params.mlflow, root)
    registry = tracking.Registry(store, params.mlflow.registered_model_name)
    tracking.activate(store)
    if version is None and registry.alias(tracking.CHAMPION) is None:
        raise UserError(
            f"registered model '{registry.name}' has no champion yet; run "
            "'digits promote' (or serve a version with --version N)"
        )
    if version is not None and registry.version(version) is None:
        raise UserError(f"registered model '{registry.name}' has no version {version}")
    prediction_log = log_url(params.monitoring, root) if params.monitoring.enabled else ""
    if prediction_log:
        PredictionLog(prediction_log)  # a URL that is no database URL: one line, before workers
    served = ServedModel(
        tracking_uri=store.uri,
        name=registry.name,
        alias=None if version else tracking.CHAMPION,
        pinned_version=version,
        poll_seconds=params.serve.poll_seconds,
        local_copies=str(root / params.serve.local_copies_dir),
        max_body_bytes=params.serve.max_request_bytes,
        max_picture_pixels=params.pictures.max_pixels,
        max_request_pixels=round(params.serve.max_request_megapixels * 1e6),
        max_parts=params.serve.max_parts,
        max_rows=params.serve.max_rows,
        max_concurrent_requests=params.serve.max_concurrent_requests,
        request_timeout_seconds=params.serve.request_timeout_seconds,
        allowed_origins=",".join(params.serve.allowed_origins),
        log=LogSettings(
            url=prediction_log,
            store_pixels=params.monitoring.store_pixels,
            queue_size=params.monitoring.queue_size,
            batch_size=params.monitoring.batch_size,
            flush_seconds=params.monitoring.flush_seconds,
        ),
    )
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "digit_recognizer.serving.app:create_app",
        "--host",
        params.serve.host,
        "--port",
        str(port),
        "--workers",
        str(params.serve.workers),
        "--no-access-log",
        "--http",
        "digit_recognizer.serving.connections:NoDelayH11Protocol",
    ]
    # The workers' metrics files: a fresh folder per server, or counts would carry over.
    metrics_dir = root / params.monitoring.log_dir / f"metrics-{port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    return ServerCommand(
        argv,
        {
            **_environment(store),
            **served.environment(),
            MULTIPROCESS_VARIABLE: str(metrics_dir),
        },
    )


def ui_command(params: Params, root: Path, port: int) -> ServerCommand:
    store = tracking.Store.for_project(params.mlflow, root)
    experiment_id = tracking.activate(store)  # creates them in a fresh checkout
    # one worker: the UI is one person's (MLflow's default of four took twice as long to start)
    argv = [program("mlflow"), "ui", "-h", params.serve.host, "-p", str(port), "--workers", "1"]
    if store.artifact_location:
        argv += ["--default-artifact-root", store.artifact_location]
    # the store's URI (a postgresql:// one holds a password) by environment: ps shows argv,
    # and run_server prints it
    return ServerCommand(
        argv,
        {
            **_environment(store),
            **tracking.SERVER_ENVIRONMENT,
            "MLFLOW_BACKEND_STORE_URI": store.uri,
        },
        ui_page(params.serve.host, port, experiment_id),
    )


def read_inputs(paths: list[Path], limits: PictureLimits) -> npt.NDArray[np.uint8]:
    """Kaggle rows from any mix of CSVs (test.csv layout) and pictures, in the order given;
    an error names the file at fault."""
    rows = []
    for path in paths:
        if path.suffix.lower() == ".csv":
            rows.append(read_digits_csv(path, require_labels=False).images)
            continue
        if path.suffix.lower() not in PICTURE_SUFFIXES:
            raise UserError(
                f"{path}: --input takes CSVs in the test.csv layout and pictures "
                f"({', '.join(sorted(PICTURE_SUFFIXES))})"
            )
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{path}: file not found") from None
        except OSError as error:
            raise UserError(f"{path}: cannot read ({error.strerror})") from None
        rows.append(read_picture(content, str(path), limits).reshape(1, -1))
    return np.concatenate(rows)


def predict_batch(
    params: Params, root: Path, inputs: list[Path], version: str | None, output: Path
) -> int:
    """Predict with the champion (or a version) and write a Kaggle submission; return rows."""
    pixels = read_inputs(
        inputs, PictureLimits(params.pictures.max_pixels, params.pictures.max_bytes)
    )
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    labels = tracking.predict_labels(model_uri(params, version), store, pixels)
    write_submission(labels, output)
    return len(labels)
