"""The scoring server ``digits serve`` runs: MLflow's own scoring app (the same request
parsing, schema checks and JSON/CSV answers as ``mlflow models serve``) around a model that
follows the registry.

Serving ``@champion``, every worker polls the alias; when it moves (promote, rollback) the new
version is loaded beside the old one and then swapped in with one assignment, so no request is
dropped and each is answered by exactly one version, named in the ``X-Model-Version`` header.
``GET /model`` says what is served. Configuration comes from the environment that
``serving.serve_command`` sets, so every uvicorn worker builds the same app.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer import registry_client, tracking

VERSION_HEADER = "X-Model-Version"
ENVIRONMENT_PREFIX = "DIGITS_SERVE_"

# The version that answered the current request; the handler runs predict in a worker thread,
# so the middleware shares a mutable cell with it rather than a value.
_answered_by: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("answered_by")


@dataclass(frozen=True)
class ServedModel:
    """What a server serves: a registered model, pinned to a version or following an alias."""

    tracking_uri: str
    name: str
    alias: str | None  # None: pinned to ``pinned_version``
    pinned_version: str | None
    poll_seconds: float
    max_body_bytes: int

    def environment(self) -> dict[str, str]:
        return {
            f"{ENVIRONMENT_PREFIX}{key.upper()}": "" if value is None else str(value)
            for key, value in self.__dict__.items()
        }

    @classmethod
    def from_environment(cls) -> ServedModel:
        def value(key: str) -> str:
            return os.environ[f"{ENVIRONMENT_PREFIX}{key.upper()}"]

        return cls(
            tracking_uri=value("tracking_uri"),
            name=value("name"),
            alias=value("alias") or None,
            pinned_version=value("pinned_version") or None,
            poll_seconds=float(value("poll_seconds")),
            max_body_bytes=int(value("max_body_bytes")),
        )


class FollowingModel:
    """A pyfunc stand-in for MLflow's scoring app whose model can be swapped under it."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self._store = tracking.Store(served.tracking_uri, "", None)
        self._registry = registry_client.Registry(self._store, served.name)
        version = self._wanted_version()
        # one attribute for the pair: a request never sees one version's number on another's model
        self._current: tuple[str, Any] = (version, self._load(version))
        self.metadata = self._current[1].metadata

    @property
    def version(self) -> str:
        return self._current[0]

    def _wanted_version(self) -> str:
        if self.served.alias is None:
            assert self.served.pinned_version is not None
            return self.served.pinned_version
        version = self._registry.alias(self.served.alias)
        if version is None:
            raise RuntimeError(f"registered model '{self.served.name}' has no @{self.served.alias}")
        return version

    def _load(self, version: str) -> Any:
        return registry_client.load_pyfunc(f"models:/{self.served.name}/{version}", self._store)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        version, model = self._current
        cell = _answered_by.get(None)
        if cell is not None:
            cell["version"] = version
        return model.predict(data, params=params)

    def follow(self) -> None:
        """Poll the alias; load a new version fully before swapping it in."""
        while True:  # a daemon thread: it ends with the worker process
            time.sleep(self.served.poll_seconds)
            try:
                wanted = self._wanted_version()
                if wanted != self.version:
                    self._current = (wanted, self._load(wanted))
                    print(f"serve: now serving version {wanted}", flush=True)
            except Exception as error:  # a registry hiccup must not stop serving
                print(f"serve: keeping version {self.version}: {error}", flush=True)


class BadRequest(ValueError):
    """A request the server refuses with HTTP 400 and this one-line reason."""


def integer_pixels(rows: Any) -> npt.NDArray[np.int64]:
    """Rows as the signature's integer tensor. Non-integer pixels are refused rather than cast
    (MLflow's JSON parser casts to the signature's dtype, turning 0.5 into 0 without a word)."""
    try:
        values = np.asarray(rows)
    except ValueError:  # ragged rows
        raise BadRequest("every row must have 784 pixels") from None
    if values.dtype.kind not in "iuf":
        raise BadRequest("pixels must be integers 0-255, got non-numeric values")
    if values.dtype.kind == "f" and not (
        np.isfinite(values).all() and np.array_equal(values, np.round(values))
    ):
        raise BadRequest("pixels must be integers 0-255")
    return values.astype(np.int64)


def kaggle_rows(content_type: str, body: bytes) -> npt.NDArray[np.int64] | None:
    """The rows of a body in a Kaggle form: CSV with the Kaggle header, JSON ``dataframe_split``
    with the ``pixel0..pixel783`` columns (MLflow's own parser casts such bodies column by
    column: 150 ms for one image), or JSON ``inputs``/``instances`` arrays. None for anything
    else, which MLflow's app answers itself (with a 4xx when it is malformed)."""
    from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS

    if content_type == "text/csv":  # split by hand: pandas takes ~25 ms for 784 columns
        try:
            lines = [line for line in body.decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise BadRequest("a CSV body must be UTF-8 text") from None
        if len(lines) < 2:
            raise BadRequest("a CSV body needs the Kaggle header and at least one row")
        columns = [name.strip() for name in lines[0].split(",")]
        cells = [line.split(",") for line in lines[1:]]
        if any(len(row) != len(columns) for row in cells):
            raise BadRequest(f"every CSV row must have {len(columns)} values, as the header")
        try:
            rows: Any = np.array(cells, dtype=np.float64)
        except ValueError:
            raise BadRequest("pixels must be integers 0-255, got non-numeric values") from None
    else:
        try:
            document = json.loads(body)
        except ValueError:
            return None
        if not (isinstance(document, dict) and len(document) == 1):
            return None
        form, content = next(iter(document.items()))
        if form in ("inputs", "instances"):
            columns, rows = None, content
        elif form == "dataframe_split" and isinstance(content, dict) and "data" in content:
            columns, rows = content.get("columns"), content["data"]
        else:
            return None
    if columns is not None and list(columns) != list(PIXEL_COLUMNS):
        raise BadRequest("columns must be pixel0..pixel783, in that order")
    return integer_pixels(rows)


def answer_rows(model: FollowingModel, content_type: str, body: bytes) -> Any:
    """A Kaggle-form request answered as MLflow's scoring app answers (same JSON, same error
    bodies); None leaves the request to MLflow's app."""
    import io

    from fastapi.responses import Response
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import predictions_to_json

    try:
        rows = kaggle_rows(content_type, body)
        if rows is None:
            return None
        predictions = model.predict(rows)  # MLflow checks the (-1, 784) shape here
    except BadRequest as error:
        return Response(f"invalid input: {error}\n", status_code=400, media_type="text/plain")
    except MlflowException as error:
        return Response(
            error.serialize_as_json(),
            status_code=error.get_http_status_code(),
            media_type="application/json",
        )
    answer = io.StringIO()
    predictions_to_json(predictions, answer)
    return Response(answer.getvalue(), status_code=200, media_type="application/json")


def create_app() -> Any:
    """The ASGI app (``uvicorn --factory digit_recognizer.serving_app:create_app``)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from mlflow.pyfunc import scoring_server

    served = ServedModel.from_environment()
    model = FollowingModel(served)
    app = scoring_server.init(model)  # type: ignore[arg-type]
    if served.alias is not None:
        threading.Thread(target=model.follow, name="follow-alias", daemon=True).start()

    @app.middleware("http")
    async def version_and_size(request: Request, call_next: Any) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > served.max_body_bytes:
            return Response(
                f"request body of {declared} bytes is over the limit of "
                f"{served.max_body_bytes} (serve.max_request_bytes)\n",
                status_code=413,
                media_type="text/plain",
            )
        cell: dict[str, str] = {}
        _answered_by.set(cell)
        content_type, _, parameters = request.headers.get("content-type", "").partition(";")
        response = None
        if (
            request.url.path == "/invocations"
            and content_type.strip() in ("application/json", "text/csv")
            and parameters.strip().lower() in ("", "charset=utf-8")  # others: MLflow's 415
        ):
            body = await request.body()  # replayed to MLflow's app when it answers instead
            response = await asyncio.to_thread(answer_rows, model, content_type.strip(), body)
        if response is None:
            response = await call_next(request)
        if "version" in cell:
            response.headers[VERSION_HEADER] = cell["version"]
        return response

    @app.get("/model")
    async def served_model() -> Any:
        return JSONResponse({"name": served.name, "version": model.version, "alias": served.alias})

    return app
