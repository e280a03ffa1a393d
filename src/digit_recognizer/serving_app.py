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
from dataclasses import dataclass
from typing import Any

import numpy as np

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
        self.version = self._wanted_version()
        self._model = self._load(self.version)
        self.metadata = self._model.metadata
        self._stopped = threading.Event()

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
        version, model = self.version, self._model  # one consistent pair for this request
        cell = _answered_by.get(None)
        if cell is not None:
            cell["version"] = version
        return model.predict(data, params=params)

    def follow(self) -> None:
        """Poll the alias until stopped; load a new version fully before swapping it in."""
        while not self._stopped.wait(self.served.poll_seconds):
            try:
                wanted = self._wanted_version()
                if wanted != self.version:
                    model = self._load(wanted)
                    self._model, self.version = model, wanted
                    print(f"serve: now serving version {wanted}", flush=True)
            except Exception as error:  # a registry hiccup must not stop serving
                print(f"serve: keeping version {self.version}: {error}", flush=True)

    def stop(self) -> None:
        self._stopped.set()


def non_integer_pixels(body: bytes) -> str | None:
    """MLflow casts JSON ``inputs``/``instances`` to the integer signature before the model
    sees them, so 0.5 would silently become 0; refuse such pixels here. Anything else that is
    wrong (malformed JSON, strings, NaN, shapes) MLflow refuses itself."""
    if b'"inputs"' not in body and b'"instances"' not in body:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    for key in ("inputs", "instances"):
        try:
            values = np.asarray(document.get(key, []), dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if np.isfinite(values).all() and not np.array_equal(values, np.round(values)):
            return "pixels must be integers 0-255"
    return None


def answer_csv(model: FollowingModel, body: bytes) -> Any:
    """A Kaggle-header CSV body answered as MLflow's scoring app answers JSON."""
    import io

    import pandas as pd
    from fastapi.responses import Response
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import predictions_to_json

    try:
        frame = pd.read_csv(io.BytesIO(body))
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors are ValueErrors
        return Response(
            f"invalid CSV body: {str(error).splitlines()[0]}\n",
            status_code=400,
            media_type="text/plain",
        )
    try:
        predictions = model.predict(frame)
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
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if request.url.path == "/invocations" and content_type == "application/json":
            problem = non_integer_pixels(await request.body())  # the body is replayed below
            if problem:
                return Response(f"invalid input: {problem}\n", 400, media_type="text/plain")
        if request.url.path == "/invocations" and content_type == "text/csv":
            # MLflow's CSV parser wants named columns; a tensor signature has none
            response = await asyncio.to_thread(answer_csv, model, await request.body())
        else:
            response = await call_next(request)
        if "version" in cell:
            response.headers[VERSION_HEADER] = cell["version"]
        return response

    @app.get("/model")
    async def served_model() -> Any:
        return JSONResponse({"name": served.name, "version": model.version, "alias": served.alias})

    return app
