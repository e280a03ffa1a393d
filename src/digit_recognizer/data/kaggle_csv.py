"""The Kaggle "Digit Recognizer" CSV contract: strict reading, precise errors, exact writing.

train.csv: ``label,pixel0,...,pixel783``; test.csv: ``pixel0,...,pixel783`` with an optional
leading ``label`` column. Every value is an integer; pixels 0-255, labels 0-9.

Valid files take the fast path (pyarrow, multi-threaded). When pyarrow refuses a file, a slow
pure-Python scan finds the first offending line and column so the message can name them.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.errors import UserError
from digit_recognizer.files import atomic_path, write_text

IMAGE_SIDE = 28
PIXEL_COUNT = IMAGE_SIDE * IMAGE_SIDE
LABEL_COLUMN = "label"
PIXEL_COLUMNS = tuple(f"pixel{index}" for index in range(PIXEL_COUNT))


def pixel_frame(pixels: npt.NDArray[np.uint8]) -> Any:
    """Rows of 784 pixels as a DataFrame with Kaggle's columns, what the models' signatures
    take (a pandas.DataFrame; pandas loads only when called)."""
    import pandas as pd

    return pd.DataFrame(pixels.astype(np.int64), columns=list(PIXEL_COLUMNS))


DIGITS = tuple(range(10))
_INTEGER = re.compile(r"-?[0-9]+")
_SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class DigitTable:
    """Images as uint8 rows of 784 pixels, and labels when the file has them."""

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.uint8] | None

    def __len__(self) -> int:
        return int(self.images.shape[0])


PIXEL_RANGE = (0, 255)
LABEL_RANGE = (0, 9)


def _value_range(column: str) -> tuple[int, int]:
    return LABEL_RANGE if column == LABEL_COLUMN else PIXEL_RANGE


def first_out_of_range(values: npt.NDArray[Any], columns: list[str]) -> tuple[int, int] | None:
    """(row, column) of the first value outside its column's range, or None."""
    ranges = np.array([_value_range(name) for name in columns])
    outside = (values < ranges[:, 0]) | (values > ranges[:, 1])
    if not outside.any():
        return None
    row, column = (int(index) for index in np.argwhere(outside)[0])
    return row, column


class PixelError(ValueError):
    """Rows that are not Kaggle pixel rows; the message says why, in one line."""


def validated_pixels(rows: Any) -> npt.NDArray[np.uint8]:
    """The one check of pixel rows handed over in memory (the pyfunc's input, a request body):
    rows of 784 integers 0-255 (one flat row too) -> (n, 784) uint8. Non-integers are refused,
    never cast. PixelError names the first problem."""
    try:
        values = np.asarray(rows)
    except (ValueError, RecursionError):  # ragged or absurdly nested rows
        raise PixelError(f"expected rows of {PIXEL_COUNT} pixels, got ragged rows") from None
    if values.ndim == 1 and values.size == PIXEL_COUNT:
        values = values.reshape(1, PIXEL_COUNT)
    if values.ndim != 2 or values.shape[1] != PIXEL_COUNT:
        raise PixelError(f"expected rows of {PIXEL_COUNT} pixels, got shape {values.shape}")
    if values.shape[0] == 0:
        raise PixelError("no rows to predict")
    if values.dtype.kind not in "iuf":
        raise PixelError("pixels must be integers 0-255, got non-numeric values")
    if not np.isfinite(values).all() or not np.array_equal(values, np.round(values)):
        raise PixelError("pixels must be integers 0-255")
    if first_out_of_range(values, list(PIXEL_COLUMNS)) is not None:
        raise PixelError(f"pixels must be within 0-255, got {values.min()}..{values.max()}")
    return values.astype(np.uint8)


def _read_header(path: Path) -> list[str]:
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    if not head.strip():
        raise UserError(f"{path}: file is empty")
    if b"\x00" in head:
        raise UserError(f"{path}: not a CSV text file (binary data at byte {head.index(0)})")
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header_text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path}:1: not a CSV text file (invalid UTF-8 at byte {error.start})"
        ) from None
    return [name.strip().strip('"') for name in header_text.split(",")]


def _check_header(path: Path, header: list[str], *, require_labels: bool) -> bool:
    """Return whether the file has a label column; raise naming the first wrong column."""
    has_labels = bool(header) and header[0] == LABEL_COLUMN
    if require_labels and not has_labels:
        raise UserError(
            f"{path}:1: header must start with 'label' (column 1 is '{header[0][:40]}')"
        )
    expected = [LABEL_COLUMN, *PIXEL_COLUMNS] if has_labels else list(PIXEL_COLUMNS)
    for position, (found, wanted) in enumerate(zip(header, expected, strict=False), start=1):
        if found != wanted:
            raise UserError(
                f"{path}:1: header column {position} is '{found[:40]}', expected '{wanted}'"
            )
    if len(header) != len(expected):
        raise UserError(
            f"{path}:1: header has {len(header)} columns, expected {len(expected)} "
            f"({expected[0]},...,{expected[-1]})"
        )
    return has_labels


def _locate_first_problem(path: Path, header: list[str]) -> str | None:
    """Scan line by line (slow) and describe the first malformed line, or None if none is."""
    with path.open("rb") as stream:
        next(stream)
        for line, raw in enumerate(stream, start=2):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                return f"{path}:{line}: not a CSV text file (invalid UTF-8 at byte {error.start})"
            if not text.strip():
                return f"{path}:{line}: empty line"
            try:
                row = next(csv.reader([text]))
            except csv.Error as error:
                return f"{path}:{line}: malformed CSV ({error})"
            if len(row) != len(header):
                return f"{path}:{line}: expected {len(header)} values, found {len(row)}"
            for column, value in zip(header, row, strict=True):
                stripped = value.strip()
                if not stripped:
                    return f"{path}:{line}: column '{column}': empty value"
                if not _INTEGER.fullmatch(stripped):
                    return f"{path}:{line}: column '{column}': '{stripped[:20]}' is not an integer"
                low, high = _value_range(column)
                if not low <= int(stripped) <= high:
                    return f"{path}:{line}: column '{column}': {stripped} is outside {low}-{high}"
    return None


def _fast_read(path: Path, header: list[str]) -> npt.NDArray[np.int32]:
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    table = arrow_csv.read_csv(
        path,
        parse_options=arrow_csv.ParseOptions(ignore_empty_lines=False),
        convert_options=arrow_csv.ConvertOptions(
            column_types={name: pa.int32() for name in header},
            null_values=[""],
            quoted_strings_can_be_null=False,
        ),
    )
    if table.num_rows and any(column.null_count for column in table.columns):
        raise ValueError("empty values")
    return np.column_stack([column.to_numpy() for column in table.columns]).astype(np.int32)


def _check_ranges(path: Path, header: list[str], values: npt.NDArray[np.int32]) -> None:
    found = first_out_of_range(values, header)
    if found is not None:
        row, column = found
        low, high = _value_range(header[column])
        raise UserError(
            f"{path}:{row + 2}: column '{header[column]}': {values[row, column]} "
            f"is outside {low}-{high}"
        )


def read_digits_csv(path: Path, *, require_labels: bool, partial: bool = False) -> DigitTable:
    """Read and strictly validate a Kaggle-format digits CSV. ``partial``: labelled rows that
    may be none, or not cover every digit (people's corrections)."""
    header = _read_header(path)
    has_labels = _check_header(path, header, require_labels=require_labels or partial)
    try:
        values = _fast_read(path, header)
    except (ValueError, OSError) as error:  # pyarrow.ArrowInvalid is a ValueError
        problem = _locate_first_problem(path, header)
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(problem or f"{path}: cannot parse CSV ({first_line})") from None
    if values.shape[0] == 0 and partial:
        return DigitTable(np.zeros((0, PIXEL_COUNT), np.uint8), np.zeros(0, np.uint8))
    if values.shape[0] == 0:
        raise UserError(f"{path}: header only, no data rows")
    _check_ranges(path, header, values)
    labels = values[:, 0].astype(np.uint8) if has_labels else None
    images = values[:, 1:] if has_labels else values
    if labels is not None:
        missing = [] if partial else sorted(set(DIGITS) - set(np.unique(labels).tolist()))
        if missing and require_labels:
            raise UserError(f"{path}: no rows for digit(s) {missing}; every digit 0-9 is needed")
        if missing:
            print(f"warning: {path}: no rows for digit(s) {missing}", file=sys.stderr)
    return DigitTable(images=np.ascontiguousarray(images, dtype=np.uint8), labels=labels)


def write_digits_csv(path: Path, table: DigitTable) -> None:
    """Write exactly the Kaggle layout (unquoted header, integers, LF); atomic."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    columns: list[npt.NDArray[np.uint8]] = []
    names: list[str] = []
    if table.labels is not None:
        columns.append(table.labels)
        names.append(LABEL_COLUMN)
    columns.extend(table.images.T)
    names.extend(PIXEL_COLUMNS)
    arrow_table = pa.table([pa.array(column) for column in columns], names=names)
    with atomic_path(path) as temporary, temporary.open("wb") as stream:
        # pyarrow quotes header names whatever the quoting style; Kaggle's header is bare.
        stream.write((",".join(names) + "\n").encode("ascii"))
        arrow_csv.write_csv(
            arrow_table,
            stream,
            write_options=arrow_csv.WriteOptions(
                include_header=False, quoting_style="none", batch_size=4096
            ),
        )


def write_submission(labels: npt.NDArray[np.int64], path: Path) -> None:
    """Kaggle's submission format: ImageId (from 1), Label."""
    lines = ["ImageId,Label", *(f"{index},{label}" for index, label in enumerate(labels, start=1))]
    write_text(path, "\n".join(lines) + "\n")
