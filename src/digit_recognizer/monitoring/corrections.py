"""People's corrections: one label for an answer (the page, ``POST /feedback``) or many from
a CSV of ``prediction_id,label`` (``digits feedback add``), and the labelled answers written
out in Kaggle's train layout (``digits feedback export``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digit_recognizer.data.kaggle_csv import DigitTable, write_digits_csv
from digit_recognizer.errors import UserError
from digit_recognizer.monitoring.log import PredictionLog

CORRECTIONS_HEADER = ["prediction_id", "label"]


class BadCorrection(ValueError):
    """A correction refused with HTTP 400 (or one CLI line) and this reason."""


class UnknownPrediction(LookupError):
    """A correction for an answer the log does not hold (HTTP 404)."""


def checked_label(value: Any) -> int:
    """A digit 0-9 as an integer; else BadCorrection."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise BadCorrection(f"label must be a digit 0-9, got {value!r}")
    return value


def correction_from_json(document: Any) -> tuple[str, int]:
    """``{"prediction_id": "...", "label": 7}`` checked; BadCorrection says what is wrong."""
    if not isinstance(document, dict) or set(document) != {"prediction_id", "label"}:
        raise BadCorrection('POST {"prediction_id": "<the X-Prediction-Id>", "label": 0-9}')
    identifier = document["prediction_id"]
    if not isinstance(identifier, str) or not identifier:
        raise BadCorrection("prediction_id must be the X-Prediction-Id the answer came with")
    return identifier, checked_label(document["label"])


def record_corrections(log: PredictionLog, labels: Sequence[tuple[str, int]], source: str) -> None:
    """Append the labels, all or none; UnknownPrediction names the first id not in the log."""
    known = log.known_ids(identifier for identifier, _ in labels)
    for identifier, _ in labels:
        if identifier not in known:
            raise UnknownPrediction(f"no answer with prediction id '{identifier[:64]}' in the log")
    log.add_corrections(labels, source)


def read_corrections_csv(path: Path) -> list[tuple[str, int]]:
    """``prediction_id,label`` rows; a UserError names the file and line at fault."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.reader(stream))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: cannot read as CSV ({error})") from None
    if not rows or [cell.strip() for cell in rows[0]] != CORRECTIONS_HEADER:
        raise UserError(f"{path}: line 1: the header must be 'prediction_id,label'")
    labels = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise UserError(f"{path}: line {line}: expected 2 values, got {len(row)}")
        try:
            cell = row[1].strip()
            labels.append((row[0].strip(), checked_label(int(cell) if cell.isdigit() else cell)))
        except BadCorrection as error:
            raise UserError(f"{path}: line {line}: {error}") from None
    if not labels:
        raise UserError(f"{path}: no corrections after the header")
    return labels


def add_corrections_file(log: PredictionLog, path: Path) -> int:
    """``digits feedback add``: every row of the file, or none; returns how many."""
    labels = read_corrections_csv(path)
    try:
        record_corrections(log, labels, "batch")
    except UnknownPrediction as error:
        raise UserError(f"{path}: {error}; nothing was added") from None
    return len(labels)


def export_labelled(log: PredictionLog, output: Path) -> int:
    """``digits feedback export``: the corrected answers that kept their pixels, in Kaggle's
    train layout (label, pixel0..pixel783), sorted by prediction id; written atomically."""
    _, pixels, labels = log.labelled()
    write_digits_csv(output, DigitTable(images=pixels, labels=labels))
    return len(labels)
