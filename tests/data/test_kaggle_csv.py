"""Data contract: the Kaggle CSV layout is read exactly and every malformation is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.data.kaggle_csv import (
    PIXEL_COLUMNS,
    DigitTable,
    read_digits_csv,
    write_digits_csv,
)
from digit_recognizer.errors import UserError
from tests.helpers.project import synthetic_digits

HEADER = "label," + ",".join(PIXEL_COLUMNS)


def row(label: object = 3, pixel: object = 0, count: int = 784) -> str:
    return ",".join([str(label)] + [str(pixel)] * count)


def all_digit_rows() -> list[str]:
    return [row(label=digit) for digit in range(10)]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip_is_exact_and_byte_stable(tmp_path: Path) -> None:
    # given a table written in the Kaggle layout
    table = synthetic_digits(per_class=3, seed=1)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_digits_csv(first, table)
    write_digits_csv(second, table)
    # when it is read back
    loaded = read_digits_csv(first, require_labels=True)
    # then values, header and bytes are exactly preserved
    assert np.array_equal(loaded.images, table.images)
    assert loaded.labels is not None and table.labels is not None
    assert np.array_equal(loaded.labels, table.labels)
    assert first.read_text().splitlines()[0] == HEADER
    assert first.read_bytes() == second.read_bytes()


def test_test_file_without_labels_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "test.csv", [",".join(PIXEL_COLUMNS), ",".join(["7"] * 784)])
    table = read_digits_csv(path, require_labels=False)
    assert table.labels is None and table.images.shape == (1, 784) and table.images[0, 0] == 7


BAD_TRAIN_FILES = {
    "empty file": ([""], "file is empty"),
    "header only": ([HEADER], "no data rows"),
    "missing label column": (
        [",".join(PIXEL_COLUMNS), row()],
        ":1: header must start with 'label'",
    ),
    "wrong header name": (
        [HEADER.replace("pixel5,", "pixelX,"), row()],
        ":1: header column 7 is 'pixelX', expected 'pixel5'",
    ),
    "too few header columns": ([HEADER.rsplit(",", 1)[0], row()], ":1: header has 784 columns"),
    "ragged row": (
        [HEADER, *all_digit_rows(), row(count=783)],
        ":12: expected 785 values, found 784",
    ),
    "blank line": ([HEADER, all_digit_rows()[0], "", *all_digit_rows()], ":3: empty line"),
    "non-integer value": (
        [HEADER, *all_digit_rows(), row(pixel="1.5")],
        ":12: column 'pixel0': '1.5' is not an integer",
    ),
    "text value": (
        [HEADER, row(pixel="abc"), *all_digit_rows()],
        ":2: column 'pixel0': 'abc' is not an integer",
    ),
    "empty value": ([HEADER, *all_digit_rows(), row(label="")], ":12: column 'label': empty value"),
    "pixel above 255": (
        [HEADER, *all_digit_rows(), row(pixel=256)],
        ":12: column 'pixel0': 256 is outside 0-255",
    ),
    "negative pixel": (
        [HEADER, row(pixel=-1), *all_digit_rows()],
        ":2: column 'pixel0': -1 is outside 0-255",
    ),
    "label above 9": (
        [HEADER, *all_digit_rows(), row(label=10)],
        ":12: column 'label': 10 is outside 0-9",
    ),
    "a digit is missing": ([HEADER, *all_digit_rows()[:9]], "no rows for digit(s) [9]"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_FILES))
def test_malformed_train_file_is_named_precisely(tmp_path: Path, case: str) -> None:
    # given a train.csv with one defect
    lines, expected = BAD_TRAIN_FILES[case]
    path = write(tmp_path / "train.csv", lines)
    # when it is read, then the error names the file, the line and the column at fault
    with pytest.raises(UserError) as caught:
        read_digits_csv(path, require_labels=True)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert expected in message, f"expected {expected!r} in {message!r}"
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"train\.csv: file not found"):
        read_digits_csv(tmp_path / "train.csv", require_labels=True)


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(UserError, match="not a CSV text file"):
        read_digits_csv(path, require_labels=True)


def test_invalid_utf8_after_a_valid_header(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes((HEADER + "\n").encode() + b"\xff\xfe" * 500 + b"\n")
    with pytest.raises(UserError, match=r"train.csv:2: not a CSV text file"):
        read_digits_csv(path, require_labels=True)


def test_test_file_pixel_columns_must_match(tmp_path: Path) -> None:
    header = ",".join((*PIXEL_COLUMNS[:-1], "pixel_last"))
    path = write(tmp_path / "test.csv", [header, ",".join(["0"] * 784)])
    with pytest.raises(UserError, match="header column 784 is 'pixel_last', expected 'pixel783'"):
        read_digits_csv(path, require_labels=False)


def test_labelled_test_file_missing_a_digit_only_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "test.csv", [HEADER, row(label=1), row(label=2)])
    table = read_digits_csv(path, require_labels=False)
    assert table.labels is not None and list(table.labels) == [1, 2]
    assert "warning" in capsys.readouterr().err


def test_digit_table_length() -> None:
    assert len(DigitTable(np.zeros((3, 784), np.uint8), None)) == 3
