"""The server's answers to requests it will not do the work of: from their headers alone
(another site's page, an unread type, a declared length over the limit), a body over the
limit or too slow to arrive, and more requests at once than a worker answers."""

from __future__ import annotations

import asyncio
from typing import Any

from digit_recognizer.serving.bodies import Deadline, is_readable


def text_response(status: int, line: str) -> Any:
    from fastapi.responses import Response

    return Response(f"{line}\n", status_code=status, media_type="text/plain")


def too_large(max_bytes: int) -> Any:
    return text_response(
        413, f"request body over the limit of {max_bytes} bytes (serve.max_request_bytes)"
    )


def busy(in_flight: int) -> Any:
    answer = text_response(
        503,
        f"busy: {in_flight} requests being answered (serve.max_concurrent_requests); "
        "retry in a second",
    )
    answer.headers["Retry-After"] = "1"
    return answer


def refused_before_reading(request: Any, max_bytes: int, allowed_origins: set[str]) -> Any:
    """A POST refused from its headers alone: another site's page (403), a type no reader
    here takes (415; MLflow's own app would decode parquet without a limit), a declared
    length over the limit (413). None lets it through."""
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own and origin not in allowed_origins:
            return text_response(
                403, f"requests from pages on {origin} are refused (serve.allowed_origins)"
            )
    content_type = request.headers.get("content-type", "")
    if request.url.path == "/invocations" and not is_readable(content_type):
        return text_response(
            415,
            f"content type {content_type or '(none)'!r} is not read here; send "
            "application/json or text/csv (UTF-8), image/png, image/jpeg, image/webp, "
            "image/bmp, image/gif, image/tiff or multipart/form-data",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return too_large(max_bytes)
    return None


async def _capped_body(request: Any, limit: int) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what Request.body() caches: MLflow's app reads it again if it answers
    return body


async def body_or_refusal(request: Any, max_bytes: int, deadline: Deadline) -> tuple[bytes, Any]:
    """The body, read in chunks whatever the transfer encoding, and None; or b"" and the
    answer: 413 past ``max_bytes``, 408 when it has not all arrived by the deadline."""
    try:
        body = await asyncio.wait_for(_capped_body(request, max_bytes), deadline.remaining())
    except TimeoutError:
        return b"", text_response(
            408,
            f"the request body did not arrive within {deadline.seconds:g} s "
            "(serve.request_timeout_seconds)",
        )
    return (b"", too_large(max_bytes)) if body is None else (body, None)
