"""The scoring server ``digits serve`` runs: MLflow's own scoring app (the same request
parsing, schema checks and JSON/CSV answers as ``mlflow models serve``) around a model that
follows the registry (serving/following.py).

Each answer names its version in ``X-Model-Version`` and its rows' records in the prediction
log in ``X-Prediction-Id`` (one id per row, comma-separated); ``POST /feedback`` takes a
person's label for one of them. ``GET /model`` says what is served, ``GET /metrics`` counts
it all for Prometheus, and ``GET /`` is a page to draw or drop a digit on, which asks
``POST /explain`` what the model saw and answered and lets the person say whether it was right.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from digit_recognizer.data.pictures import PictureLimits
from digit_recognizer.monitoring.corrections import (
    BadCorrection,
    UnknownPrediction,
    correction_from_json,
)
from digit_recognizer.monitoring.metrics import ServingMetrics, exposition
from digit_recognizer.serving.bodies import (
    BadRequest,
    Deadline,
    PastDeadline,
    RequestBudget,
    input_kind,
    request_rows,
)
from digit_recognizer.serving.following import (
    FollowingModel,
    ServedModel,
    answered_by,
)
from digit_recognizer.serving.limits import (
    body_or_refusal,
    busy,
    refused_before_reading,
    text_response,
)
from digit_recognizer.serving.recording import PREDICTION_ID_HEADER, Recorder

VERSION_HEADER = "X-Model-Version"
# The requests counted in the metrics, by path; others (ping, the page, /model) are not.
_COUNTED_PATHS = ("/invocations", "/explain", "/feedback")


def _probabilities(frame: Any) -> Any:
    from digit_recognizer.models.pyfunc import PROBABILITY_COLUMNS

    return frame[list(PROBABILITY_COLUMNS)].to_numpy()


def answer_rows(
    model: FollowingModel,
    recorder: Recorder,
    content_type: str,
    body: bytes,
    budget: RequestBudget,
    deadline: Deadline,
) -> Any:
    """A Kaggle-form or picture request answered as MLflow's scoring app answers (same JSON,
    same error bodies), and recorded; None leaves the request to MLflow's app."""
    import io

    from fastapi.responses import Response
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import predictions_to_json

    started = time.perf_counter()
    try:
        rows = request_rows(content_type, body, budget, deadline)
        if rows is None:
            return None
        # MLflow checks the shape here
        version, predictions = model.predict_with_version(rows, deadline=deadline)
    except BadRequest as error:
        return text_response(400, f"invalid input: {error}")
    except PastDeadline as error:
        return text_response(503, str(error))
    except MlflowException as error:
        return Response(
            error.serialize_as_json(),
            status_code=error.get_http_status_code(),
            media_type="application/json",
        )
    identifiers = recorder.record(
        input_kind(content_type), rows, _probabilities(predictions), version, started
    )
    answer = io.StringIO()
    predictions_to_json(predictions, answer)
    response = Response(answer.getvalue(), status_code=200, media_type="application/json")
    if identifiers:
        response.headers[PREDICTION_ID_HEADER] = ",".join(identifiers)
    return response


def explain_picture(
    model: FollowingModel,
    recorder: Recorder,
    content_type: str,
    body: bytes,
    budget: RequestBudget,
    deadline: Deadline,
) -> Any:
    """What the page shows: the digit, the ten probabilities, the served version, the 28 x 28
    picture the model saw and the answer's prediction id (one picture per request)."""
    from fastapi.responses import JSONResponse

    started = time.perf_counter()
    try:
        rows = request_rows(content_type, body, budget, deadline)
        if rows is None or len(rows) != 1:
            raise BadRequest("POST one picture (image/png, image/jpeg, ...) to /explain")
        version, frame = model.predict_with_version(rows, deadline=deadline)
    except BadRequest as error:
        return text_response(400, f"invalid input: {error}")
    except PastDeadline as error:
        return text_response(503, str(error))
    probabilities = _probabilities(frame)
    identifiers = recorder.record("page", rows, probabilities, version, started)
    response = JSONResponse(
        {
            "version": version,
            "label": int(frame["label"].iloc[0]),
            "probabilities": [float(value) for value in probabilities[0]],
            "pixels": rows[0].tolist(),
            "prediction_id": identifiers[0] if identifiers else None,
        }
    )
    if identifiers:
        response.headers[PREDICTION_ID_HEADER] = identifiers[0]
    return response


def take_correction(recorder: Recorder, body: bytes) -> Any:
    """``POST /feedback``: 204 when kept, 400 for a bad body or label, 404 for an unknown id,
    503 when the log cannot be written."""
    try:
        identifier, label = correction_from_json(json.loads(body))
        recorder.correct(identifier, label, "api")
    except (ValueError, RecursionError) as error:  # BadCorrection is a ValueError
        reason = error if isinstance(error, BadCorrection) else "the body is not JSON"
        return text_response(400, f"invalid feedback: {reason}")
    except UnknownPrediction as error:
        return text_response(404, str(error))
    except Exception as error:  # the store is down: not the person's mistake
        return text_response(
            503, f"the prediction log cannot take feedback now: {type(error).__name__}"
        )
    from fastapi.responses import Response

    return Response(status_code=204)


def _flush_on_shutdown(app: Any, recorder: Recorder) -> None:
    """SIGTERM's graceful shutdown writes the queued records before the worker exits."""
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with original(application) as state:
            yield state
        await asyncio.to_thread(recorder.close)

    app.router.lifespan_context = lifespan


def create_app() -> Any:
    """The ASGI app (``uvicorn --factory digit_recognizer.serving.app:create_app``)."""
    from importlib.resources import files

    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from mlflow.pyfunc import scoring_server

    page = files("digit_recognizer.serving").joinpath("page.html").read_text(encoding="utf-8")
    served = ServedModel.from_environment()
    budget = RequestBudget(
        picture=PictureLimits(
            max_pixels=served.max_picture_pixels, max_bytes=served.max_body_bytes
        ),
        max_request_pixels=served.max_request_pixels,
        max_parts=served.max_parts,
        max_rows=served.max_rows,
    )
    allowed_origins = {origin for origin in served.allowed_origins.split(",") if origin}
    in_flight = 0  # this worker's requests being answered (the event loop is single-threaded)
    model = FollowingModel(served)
    metrics = ServingMetrics()
    metrics.served_version.set(float(model.version))
    recorder = Recorder(served.log, metrics)
    app = scoring_server.init(model)  # type: ignore[arg-type]
    _flush_on_shutdown(app, recorder)
    if served.alias is not None:
        swapped = lambda version: metrics.served_version.set(float(version))  # noqa: E731
        threading.Thread(
            target=model.follow, args=(swapped,), name="follow-alias", daemon=True
        ).start()

    @app.middleware("http")
    async def version_size_and_counts(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await _answer(request, call_next)
        path = request.url.path
        if request.method == "POST" and path in _COUNTED_PATHS:
            kind = {"/explain": "page", "/feedback": "feedback"}.get(
                path, input_kind(request.headers.get("content-type", ""))
            )
            metrics.request(kind, response.status_code, time.perf_counter() - started)
        return response

    async def _answer(request: Request, call_next: Any) -> Any:
        nonlocal in_flight
        if request.method in ("GET", "HEAD", "OPTIONS"):  # /ping, the page: always answered
            return await _answer_within_limits(request, call_next)
        refused = refused_before_reading(request, served.max_body_bytes, allowed_origins)
        if refused is not None:
            return refused
        if in_flight >= served.max_concurrent_requests:
            return busy(in_flight)
        in_flight += 1
        try:
            return await _answer_within_limits(request, call_next)
        finally:
            in_flight -= 1

    async def _answer_within_limits(request: Request, call_next: Any) -> Any:
        cell: dict[str, str] = {}
        answered_by.set(cell)
        content_type = request.headers.get("content-type", "")
        response = None
        if request.method == "POST" and request.url.path in _COUNTED_PATHS:
            deadline = Deadline.starting_now(served.request_timeout_seconds)
            body, refusal = await body_or_refusal(request, served.max_body_bytes, deadline)
            if refusal is not None:
                return refusal
            if request.url.path == "/explain":
                response = await asyncio.to_thread(
                    explain_picture, model, recorder, content_type, body, budget, deadline
                )
            elif request.url.path == "/feedback":
                response = await asyncio.to_thread(take_correction, recorder, body)
            else:
                response = await asyncio.to_thread(
                    answer_rows, model, recorder, content_type, body, budget, deadline
                )
        if response is None:
            response = await call_next(request)
        if "version" in cell:
            response.headers[VERSION_HEADER] = cell["version"]
        return response

    @app.get("/model")
    async def served_model() -> Any:
        return JSONResponse({"name": served.name, "version": model.version, "alias": served.alias})

    @app.get("/metrics")
    async def scraped_metrics() -> Any:
        content, content_type = await asyncio.to_thread(exposition)
        return Response(content, media_type=content_type)

    @app.get("/")
    async def try_the_model() -> Any:
        return HTMLResponse(page)

    return app
