"""``digits registry``: every registered version with its aliases, family, scores and the
promotion decision recorded on it, as a text table."""

from __future__ import annotations

from pathlib import Path

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.evaluation.scores import evaluation_score


def registry_table(params: Params, root: Path) -> str:
    """Versions, aliases, families and key metrics as a text table."""
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    registry = tracking.Registry(store, params.mlflow.registered_model_name)
    rows = [("version", "aliases", "family", "split", "accuracy", "macro_f1", "ms/img", "decision")]
    for record in registry.versions():
        tags = record.tags
        rows.append(
            (
                record.version,
                ",".join(record.aliases) or "-",
                tags.get("family", "?"),
                tags.get("evaluation_split", "-"),
                (evaluation_score(tags, "accuracy") or "-")[:6],
                (evaluation_score(tags, "macro_f1") or "-")[:6],
                tags.get("latency_ms_batch1", "-")[:6],
                tags.get("promotion_decision", "-"),
            )
        )
    if len(rows) == 1:
        return f"registered model '{registry.name}' has no versions yet"
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
