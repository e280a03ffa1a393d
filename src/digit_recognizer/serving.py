"""Serving the champion, batch prediction, and the MLflow UI, against the project's own store."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from digit_recognizer import registry_client, tracking
from digit_recognizer.config import Params
from digit_recognizer.data.kaggle_csv import IMAGE_SIDE, read_digits_csv, write_submission
from digit_recognizer.errors import UserError
from digit_recognizer.registry import CHAMPION


@dataclass(frozen=True)
class ServerCommand:
    argv: list[str]
    environment: dict[str, str]


def model_uri(params: Params, version: str | None) -> str:
    name = params.mlflow.registered_model_name
    return f"models:/{name}/{version}" if version else f"models:/{name}@{CHAMPION}"


def _environment(store: tracking.Store) -> dict[str, str]:
    # mlflow's local env-manager runs programs from this environment: put its bin/ first.
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": store.uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def serve_command(params: Params, root: Path, version: str | None, port: int) -> ServerCommand:
    """MLflow's scoring app under uvicorn, following ``@champion`` unless a version is pinned."""
    from digit_recognizer.serving_app import ServedModel

    store = tracking.Store.for_project(params.mlflow, root)
    registry = registry_client.Registry(store, params.mlflow.registered_model_name)
    tracking.activate(store)
    if version is None and registry.alias(CHAMPION) is None:
        raise UserError(
            f"registered model '{registry.name}' has no champion yet; run "
            "'digits promote' (or serve a version with --version N)"
        )
    if version is not None and registry.version(version) is None:
        raise UserError(f"registered model '{registry.name}' has no version {version}")
    served = ServedModel(
        tracking_uri=store.uri,
        name=registry.name,
        alias=None if version else CHAMPION,
        pinned_version=version,
        poll_seconds=params.serve.poll_seconds,
        max_body_bytes=params.serve.max_request_bytes,
    )
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "digit_recognizer.serving_app:create_app",
        "--host",
        params.serve.host,
        "--port",
        str(port),
        "--workers",
        str(params.serve.workers),
        "--no-access-log",
    ]
    return ServerCommand(argv, {**_environment(store), **served.environment()})


def ui_command(params: Params, root: Path, port: int) -> ServerCommand:
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)  # creates the store and experiment if this is a fresh checkout
    argv = [
        str(Path(sys.executable).parent / "mlflow"),
        "ui",
        "--backend-store-uri",
        store.uri,
        "-h",
        params.serve.host,
        "-p",
        str(port),
    ]
    if store.artifact_location:
        argv += ["--default-artifact-root", store.artifact_location]
    return ServerCommand(argv, _environment(store))


def png_pixels(path: Path) -> npt.NDArray[np.uint8]:
    """A PNG digit as a Kaggle row: grayscale 28x28, white digit on black like MNIST."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            gray = image.convert("L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{path}: not a readable image ({error})") from None
    pixels = np.asarray(gray, dtype=np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:  # dark ink on light paper: invert to MNIST's convention
        pixels = 255 - pixels
    return pixels.reshape(-1)


def read_inputs(paths: list[Path]) -> npt.NDArray[np.uint8]:
    """Kaggle rows from one CSV (test.csv layout) or from PNG images."""
    if len(paths) == 1 and paths[0].suffix.lower() == ".csv":
        return read_digits_csv(paths[0], require_labels=False).images
    if not all(path.suffix.lower() == ".png" for path in paths):
        raise UserError("--input takes one CSV in the test.csv layout, or PNG images")
    return np.stack([png_pixels(path) for path in paths])


def predict_batch(
    params: Params, root: Path, inputs: list[Path], version: str | None, output: Path
) -> int:
    """Predict with the champion (or a version) and write a Kaggle submission; return rows."""
    pixels = read_inputs(inputs)
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    labels = registry_client.predict_labels(model_uri(params, version), store, pixels)
    write_submission(labels, output)
    return len(labels)
