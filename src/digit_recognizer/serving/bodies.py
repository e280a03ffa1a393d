"""What a scoring request may carry, read into Kaggle rows, or refused with a one-line reason.

Kaggle rows: CSV with the Kaggle header, JSON ``dataframe_split`` with the ``pixel0..pixel783``
columns, JSON ``inputs``/``instances`` arrays. Pictures: one picture as the whole body
(``image/png``, ``image/jpeg`` and the other types the picture reader takes), or several as the
parts of a ``multipart/form-data`` body; each read the MNIST way (data/pictures.py).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS, PixelError, validated_pixels
from digit_recognizer.data.pictures import PICTURE_TYPES, PictureError, PictureLimits, read_picture

ROW_TYPES = ("application/json", "text/csv")
MULTIPART = "multipart/form-data"


class BadRequest(ValueError):
    """A request the server refuses with HTTP 400 and this one-line reason."""


def integer_pixels(rows: Any) -> npt.NDArray[np.int64]:
    """Rows as the signature's integer tensor, checked as the model checks them. Non-integer
    pixels are refused rather than cast (MLflow's JSON parser casts to the signature's dtype,
    turning 0.5 into 0 without a word)."""
    try:
        return validated_pixels(rows).astype(np.int64)
    except PixelError as error:
        raise BadRequest(str(error)) from None


def _csv_rows(body: bytes) -> tuple[list[str], Any]:
    # split by hand: pandas takes ~25 ms for 784 columns. utf-8-sig: spreadsheets write a BOM.
    try:
        lines = [line for line in body.decode("utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise BadRequest("a CSV body must be UTF-8 text") from None
    if len(lines) < 2:
        raise BadRequest("a CSV body needs the Kaggle header and at least one row")
    columns = [name.strip().strip('"') for name in lines[0].split(",")]
    cells = [line.split(",") for line in lines[1:]]
    if any(len(row) != len(columns) for row in cells):
        raise BadRequest(f"every CSV row must have {len(columns)} values, as the header")
    try:
        return columns, np.array(cells, dtype=np.float64)
    except ValueError:
        raise BadRequest("pixels must be integers 0-255, got non-numeric values") from None


def kaggle_rows(content_type: str, body: bytes) -> npt.NDArray[np.int64] | None:
    """The rows of a CSV or JSON body in a Kaggle form (MLflow's own parser casts
    ``dataframe_split`` column by column: 150 ms for one image). None for any other JSON,
    which MLflow's app answers itself (with a 4xx when it is malformed)."""
    columns: Any
    if content_type == "text/csv":
        columns, rows = _csv_rows(body)
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
    return integer_pixels(rows)


def multipart_pictures(
    content_type_header: str, body: bytes, limits: PictureLimits
) -> npt.NDArray[np.int64]:
    """Every file part of a ``multipart/form-data`` body, read as a picture, in order."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type_header}\r\n\r\n".encode("latin-1") + body
    )
    if not message.is_multipart() or not message.get_boundary():
        raise BadRequest("a multipart/form-data body needs its boundary and at least one part")
    rows = []
    for number, part in enumerate(message.iter_parts(), start=1):
        name = part.get_filename() or part.get_param("name", header="content-disposition")
        source = f"part {number} ({name})" if name else f"part {number}"
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            raise BadRequest(f"{source}: not a file")
        rows.append(read_picture(content, source, limits))
    if not rows:
        raise BadRequest("a multipart/form-data body with no parts")
    return np.stack(rows).astype(np.int64)


def request_rows(
    content_type_header: str, body: bytes, limits: PictureLimits
) -> npt.NDArray[np.int64] | None:
    """Kaggle rows from any body the server reads itself; None leaves it to MLflow's app.
    Raises BadRequest (pictures: PictureError, a BadRequest in all but name) with the reason."""
    content_type = content_type_header.partition(";")[0].strip().lower()
    try:
        if content_type in ROW_TYPES:
            return kaggle_rows(content_type, body)
        if content_type in PICTURE_TYPES:
            return read_picture(body, "the request body", limits).reshape(1, -1).astype(np.int64)
        if content_type == MULTIPART:
            return multipart_pictures(content_type_header, body, limits)
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
