"""The scoring server ``digits serve`` runs: MLflow's own scoring app (the same request
parsing, schema checks and JSON/CSV answers as ``mlflow models serve``) around a model that
follows the registry.

Serving ``@champion``, every worker polls the alias; when it moves (promote, rollback) the new
version is loaded beside the old one and then swapped in with one assignment, so no request is
dropped and each is answered by exactly one version, named in the ``X-Model-Version`` header.
``GET /model`` says what is served; ``GET /`` is a page to draw or drop a digit on, which asks
``POST /explain`` what the model saw and answered. Configuration comes from the environment that
``serving.commands.serve_command`` sets, so every uvicorn worker builds the same app.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from digit_recognizer import tracking
from digit_recognizer.data.pictures import PictureLimits
from digit_recognizer.serving.bodies import BadRequest, is_readable, request_rows

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
    max_picture_pixels: int

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
            max_picture_pixels=int(value("max_picture_pixels")),
        )


class FollowingModel:
    """A pyfunc stand-in for MLflow's scoring app whose model can be swapped under it."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self._store = tracking.Store(served.tracking_uri, "", None)
        self._registry = tracking.Registry(self._store, served.name)
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
        uri = tracking.version_uri(self.served.name, version)
        return tracking.load_pyfunc(uri, self._store)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.predict_with_version(data, params)[1]

    def predict_with_version(
        self, data: Any, params: dict[str, Any] | None = None
    ) -> tuple[str, Any]:
        """The answer and the version that gave it (also named in the response's header)."""
        version, model = self._current
        cell = _answered_by.get(None)
        if cell is not None:
            cell["version"] = version
        return version, model.predict(data, params=params)

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


def _text(status: int, line: str) -> Any:
    from fastapi.responses import Response

    return Response(f"{line}\n", status_code=status, media_type="text/plain")


def answer_rows(
    model: FollowingModel, content_type: str, body: bytes, limits: PictureLimits
) -> Any:
    """A Kaggle-form or picture request answered as MLflow's scoring app answers (same JSON,
    same error bodies); None leaves the request to MLflow's app."""
    import io

    from fastapi.responses import Response
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import predictions_to_json

    try:
        rows = request_rows(content_type, body, limits)
        if rows is None:
            return None
        predictions = model.predict(rows)  # MLflow checks the (-1, 784) shape here
    except BadRequest as error:
        return _text(400, f"invalid input: {error}")
    except MlflowException as error:
        return Response(
            error.serialize_as_json(),
            status_code=error.get_http_status_code(),
            media_type="application/json",
        )
    answer = io.StringIO()
    predictions_to_json(predictions, answer)
    return Response(answer.getvalue(), status_code=200, media_type="application/json")


def explain_picture(
    model: FollowingModel, content_type: str, body: bytes, limits: PictureLimits
) -> Any:
    """What the page shows: the digit, the ten probabilities, the served version and the
    28 x 28 picture the model saw (one picture per request)."""
    from fastapi.responses import JSONResponse

    from digit_recognizer.models.pyfunc import PROBABILITY_COLUMNS

    try:
        rows = request_rows(content_type, body, limits)
        if rows is None or len(rows) != 1:
            raise BadRequest("POST one picture (image/png, image/jpeg, ...) to /explain")
    except BadRequest as error:
        return _text(400, f"invalid input: {error}")
    version, frame = model.predict_with_version(rows)
    return JSONResponse(
        {
            "version": version,
            "label": int(frame["label"].iloc[0]),
            "probabilities": [float(frame[column].iloc[0]) for column in PROBABILITY_COLUMNS],
            "pixels": rows[0].tolist(),
        }
    )


async def capped_body(request: Any, limit: int) -> bytes | None:
    """The body, read in chunks whatever the transfer encoding; None past ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what Request.body() caches: MLflow's app reads it again if it answers
    return body


def create_app() -> Any:
    """The ASGI app (``uvicorn --factory digit_recognizer.serving.app:create_app``)."""
    from importlib.resources import files

    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from mlflow.pyfunc import scoring_server

    page = files("digit_recognizer.serving").joinpath("page.html").read_text(encoding="utf-8")
    served = ServedModel.from_environment()
    limits = PictureLimits(max_pixels=served.max_picture_pixels, max_bytes=served.max_body_bytes)
    model = FollowingModel(served)
    app = scoring_server.init(model)  # type: ignore[arg-type]
    if served.alias is not None:
        threading.Thread(target=model.follow, name="follow-alias", daemon=True).start()
    too_large = (
        f"request body over the limit of {served.max_body_bytes} bytes (serve.max_request_bytes)"
    )

    @app.middleware("http")
    async def version_and_size(request: Request, call_next: Any) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > served.max_body_bytes:
            return _text(413, too_large)
        cell: dict[str, str] = {}
        _answered_by.set(cell)
        content_type = request.headers.get("content-type", "")
        response = None
        if request.method == "POST" and request.url.path in ("/invocations", "/explain"):
            body = await capped_body(request, served.max_body_bytes)
            if body is None:
                return _text(413, too_large)
            if request.url.path == "/explain":
                response = await asyncio.to_thread(
                    explain_picture, model, content_type, body, limits
                )
            elif is_readable(content_type):
                response = await asyncio.to_thread(answer_rows, model, content_type, body, limits)
        if response is None:
            response = await call_next(request)
        if "version" in cell:
            response.headers[VERSION_HEADER] = cell["version"]
        return response

    @app.get("/model")
    async def served_model() -> Any:
        return JSONResponse({"name": served.name, "version": model.version, "alias": served.alias})

    @app.get("/")
    async def try_the_model() -> Any:
        return HTMLResponse(page)

    return app
