"""What a scoring request may carry, read into Kaggle rows, or refused with a one-line reason.

Kaggle rows: CSV with the Kaggle header, JSON ``dataframe_split`` with the ``pixel0..pixel783``
columns, JSON ``inputs``/``instances`` arrays. Pictures: one picture as the whole body
(``image/png``, ``image/jpeg`` and the other types the picture reader takes), or several as the
parts of a ``multipart/form-data`` body; each read the MNIST way (data/pictures.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS, PixelError, validated_pixels
from digit_recognizer.data.pictures import (
    PICTURE_TYPES,
    PictureError,
    PictureLimits,
    pixel_count,
    read_picture,
)

ROW_TYPES = ("application/json", "text/csv")
MULTIPART = "multipart/form-data"


class BadRequest(ValueError):
    """A request the server refuses with HTTP 400 and this one-line reason."""


class PastDeadline(Exception):
    """A request whose work ran past its deadline: what was left of it was not done (503)."""


@dataclass(frozen=True)
class Deadline:
    """When a request's work must stop (``serve.request_timeout_seconds`` after it began);
    checked between pictures and between batches of rows, the units the work is done in."""

    seconds: float
    ends: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def starting_now(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(seconds, clock() + seconds, clock)

    def remaining(self) -> float:
        return self.ends - self.clock()

    def check(self) -> None:
        if self.remaining() < 0:
            raise PastDeadline(
                f"the answer took over {self.seconds:g} s (serve.request_timeout_seconds) "
                "and its work was stopped; send fewer or smaller pictures or rows"
            )


@dataclass(frozen=True)
class RequestBudget:
    """The work one request may ask for, checked before the work is done."""

    picture: PictureLimits  # each picture: pixels and bytes
    max_request_pixels: int  # summed over all of a request's pictures
    max_parts: int  # multipart parts
    max_rows: int  # Kaggle rows

    def too_many_rows(self, count: int) -> None:
        if count > self.max_rows:
            raise BadRequest(f"{count} rows is over the limit of {self.max_rows} (serve.max_rows)")


def integer_pixels(rows: Any) -> npt.NDArray[np.int64]:
    """Rows as the signature's integer tensor, checked as the model checks them. Non-integer
    pixels are refused rather than cast (MLflow's JSON parser casts to the signature's dtype,
    turning 0.5 into 0 without a word)."""
    try:
        return validated_pixels(rows).astype(np.int64)
    except PixelError as error:
        raise BadRequest(str(error)) from None


def _csv_rows(body: bytes, budget: RequestBudget) -> tuple[list[str], Any]:
    # split by hand: pandas takes ~25 ms for 784 columns. utf-8-sig: spreadsheets write a BOM.
    try:
        lines = [line for line in body.decode("utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise BadRequest("a CSV body must be UTF-8 text") from None
    if len(lines) < 2:
        raise BadRequest("a CSV body needs the Kaggle header and at least one row")
    budget.too_many_rows(len(lines) - 1)
    columns = [name.strip().strip('"') for name in lines[0].split(",")]
    cells = [line.split(",") for line in lines[1:]]
    if any(len(row) != len(columns) for row in cells):
        raise BadRequest(f"every CSV row must have {len(columns)} values, as the header")
    try:
        return columns, np.array(cells, dtype=np.float64)
    except ValueError:
        raise BadRequest("pixels must be integers 0-255, got non-numeric values") from None


def kaggle_rows(
    content_type: str, body: bytes, budget: RequestBudget
) -> npt.NDArray[np.int64] | None:
    """The rows of a CSV or JSON body in a Kaggle form (MLflow's own parser casts
    ``dataframe_split`` column by column: 150 ms for one image). None for any other JSON,
    which MLflow's app answers itself (with a 4xx when it is malformed)."""
    columns: Any
    if content_type == "text/csv":
        columns, rows = _csv_rows(body, budget)
    else:
        try:
            document = json.loads(body)
        except RecursionError:
            raise BadRequest("the JSON body is nested too deeply") from None
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
    if columns is not None and (
        not isinstance(columns, list) or [str(name) for name in columns] != list(PIXEL_COLUMNS)
    ):
        raise BadRequest("columns must be pixel0..pixel783, in that order")
    if isinstance(rows, list):
        budget.too_many_rows(len(rows))
    return integer_pixels(rows)


def multipart_pictures(
    content_type_header: str, body: bytes, budget: RequestBudget, deadline: Deadline
) -> npt.NDArray[np.int64]:
    """Every file part of a ``multipart/form-data`` body, read as a picture, in order; the
    parts counted and their pixels summed from their headers before any is decoded."""
    from email.parser import BytesParser
    from email.policy import HTTP

    header = f"Content-Type: {content_type_header}\r\n\r\n".encode("latin-1")
    boundary = BytesParser(policy=HTTP).parsebytes(header).get_boundary()
    if not boundary:
        raise BadRequest("a multipart/form-data body needs its boundary and at least one part")
    # counted before parsing, which costs ~1 ms per 10 KB: each part and the end open with it
    delimiters = body.count(b"--" + boundary.encode("latin-1"))
    if delimiters - 1 > budget.max_parts:
        raise BadRequest(
            f"{delimiters - 1} parts is over the limit of {budget.max_parts} (serve.max_parts)"
        )
    message = BytesParser(policy=HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise BadRequest("a multipart/form-data body needs its boundary and at least one part")
    parts = list(message.iter_parts())
    if not parts:
        raise BadRequest("a multipart/form-data body with no parts")
    if len(parts) > budget.max_parts:
        raise BadRequest(
            f"{len(parts)} parts is over the limit of {budget.max_parts} (serve.max_parts)"
        )
    pictures, pixels = [], 0
    for number, part in enumerate(parts, start=1):
        name = part.get_filename() or part.get_param("name", header="content-disposition")
        source = f"part {number} ({name})" if name else f"part {number}"
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            raise BadRequest(f"{source}: not a file")
        pixels += pixel_count(content)
        if pixels > budget.max_request_pixels:
            raise BadRequest(_over_pixels(budget, f"the pictures up to {source}", pixels))
        pictures.append((source, content))
    rows = []
    for source, content in pictures:
        deadline.check()
        rows.append(read_picture(content, source, budget.picture))
    return np.stack(rows).astype(np.int64)


def _over_pixels(budget: RequestBudget, what: str, pixels: int) -> str:
    return (
        f"{what}: {pixels / 1e6:.1f} megapixels is over the limit of "
        f"{budget.max_request_pixels / 1e6:g} (serve.max_request_megapixels)"
    )


def request_rows(
    content_type_header: str, body: bytes, budget: RequestBudget, deadline: Deadline
) -> npt.NDArray[np.int64] | None:
    """Kaggle rows from any body the server reads itself; None leaves it to MLflow's app.
    Raises BadRequest (pictures: PictureError, a BadRequest in all but name) with the reason,
    PastDeadline when the pictures take longer to read than the deadline allows."""
    content_type = content_type_header.partition(";")[0].strip().lower()
    try:
        if content_type in ROW_TYPES:
            return kaggle_rows(content_type, body, budget)
        if content_type in PICTURE_TYPES:
            pixels = pixel_count(body)
            if pixels > budget.max_request_pixels:
                raise BadRequest(_over_pixels(budget, "the picture", pixels))
            return (
                read_picture(body, "the request body", budget.picture)
                .reshape(1, -1)
                .astype(np.int64)
            )
        if content_type == MULTIPART:
            return multipart_pictures(content_type_header, body, budget, deadline)
    except PictureError as error:
        raise BadRequest(str(error)) from None
    return None


def is_readable(content_type_header: str) -> bool:
    """Whether ``request_rows`` reads this type (JSON and CSV only in UTF-8, else MLflow's 415)."""
    content_type, _, parameters = content_type_header.partition(";")
    content_type = content_type.strip().lower()
    if content_type in ROW_TYPES:
        return parameters.strip().lower() in ("", "charset=utf-8")
    return content_type in (*PICTURE_TYPES, MULTIPART)


def input_kind(content_type_header: str) -> str:
    """How a request's rows came (the log's and the metrics' ``kind``)."""
    content_type = content_type_header.partition(";")[0].strip().lower()
    if content_type == "application/json":
        return "json"
    if content_type == "text/csv":
        return "csv"
    if content_type in PICTURE_TYPES:
        return "picture"
    if content_type == MULTIPART:
        return "multipart"
    return "other"
