"""The model registry: gated promotion of the ``champion`` alias, rollback, and a listing.

Stages are deprecated in MLflow 3; ``champion`` is an alias (so there is only ever one), and the
registered model's ``champion_history`` tag keeps every earlier champion so rollback knows
where to go. Promotion and rollback hold a lock file in the project root, so two racing
promotions serialise instead of losing history. (Across machines, against a tracking server,
run promotions from one place, e.g. the DVC pipeline.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from digit_recognizer import tracking
from digit_recognizer.config import FAMILIES, Params, PromoteConfig
from digit_recognizer.data.kaggle_csv import DIGITS
from digit_recognizer.errors import UserError
from digit_recognizer.training import load_trained, record_path

CHAMPION = "champion"
PREVIOUS = "previous-champion"
HISTORY_TAG = "champion_history"
LOCK_FILE = ".registry.lock"


@dataclass(frozen=True)
class Gate:
    name: str
    value: float | None
    threshold: float
    passed: bool


@dataclass(frozen=True)
class CandidateScores:
    version: str
    family: str
    test_accuracy: float
    min_class_recall: float
    latency_ms: float
    data_md5: str | None


@dataclass
class PromotionReport:
    decision: str  # promoted | rejected | skipped
    candidate_version: str | None
    candidate_family: str | None
    champion_before: str | None
    champion_after: str | None
    forced: bool = False
    reason: str = ""
    gates: list[Gate] = field(default_factory=list)
    candidates: list[dict[str, object]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


@contextlib.contextmanager
def registry_lock(root: Path) -> Iterator[None]:
    with (root / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _history(registry: tracking.Registry) -> list[str]:
    return list(json.loads(registry.model_tag(HISTORY_TAG) or "[]"))


def _scores_from_run(
    registry: tracking.Registry, record: tracking.VersionRecord
) -> CandidateScores:
    if not record.run_id:
        raise UserError(f"version {record.version} has no run to read its evaluation from")
    metrics = registry.run_metrics(record.run_id)
    if "test_accuracy" not in metrics:
        raise UserError(
            f"version {record.version} ({record.tags.get('family', '?')}) has no "
            "test scores; run its evaluate stage (needs a labelled test.csv)"
        )
    return CandidateScores(
        version=record.version,
        family=record.tags.get("family", "?"),
        test_accuracy=metrics["test_accuracy"],
        min_class_recall=min(metrics[f"test_recall_{digit}"] for digit in DIGITS),
        latency_ms=metrics.get("latency_ms_batch1", float("inf")),
        data_md5=record.tags.get("data_md5"),
    )


def rescore_on_current_test(
    params: Params, store: tracking.Store, record: tracking.VersionRecord
) -> CandidateScores:
    """Score a version through its served interface on today's test split."""
    import pandas as pd

    from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS
    from digit_recognizer.data.prepare import load_split

    test = load_split(Path(params.paths.prepared_dir), "test")
    if test.labels is None:
        raise UserError("data/test.csv has no labels: cannot compare models on it")
    model = tracking.load_pyfunc(
        f"models:/{params.mlflow.registered_model_name}/{record.version}", store
    )
    predicted = model.predict(
        pd.DataFrame(test.images.astype(np.int64), columns=list(PIXEL_COLUMNS))
    )["label"].to_numpy()
    recalls = [float((predicted[test.labels == digit] == digit).mean()) for digit in DIGITS]
    return CandidateScores(
        record.version,
        record.tags.get("family", "?"),
        float((predicted == test.labels).mean()),
        min(recalls),
        float(record.tags.get("latency_ms_batch1", "inf")),
        None,
    )


def evaluate_gates(
    candidate: CandidateScores, champion: CandidateScores | None, gates: PromoteConfig
) -> list[Gate]:
    checks = [
        Gate(
            "min_test_accuracy",
            candidate.test_accuracy,
            gates.min_test_accuracy,
            candidate.test_accuracy >= gates.min_test_accuracy,
        ),
        Gate(
            "min_class_recall",
            candidate.min_class_recall,
            gates.min_class_recall,
            candidate.min_class_recall >= gates.min_class_recall,
        ),
        Gate(
            "max_latency_ms",
            candidate.latency_ms,
            gates.max_latency_ms,
            candidate.latency_ms <= gates.max_latency_ms,
        ),
    ]
    if champion is not None:
        improvement = candidate.test_accuracy - champion.test_accuracy
        checks.append(
            Gate(
                "min_improvement",
                improvement,
                gates.min_improvement,
                improvement >= gates.min_improvement,
            )
        )
    return checks


def _move_champion(
    registry: tracking.Registry, version: str, forced: bool, report: PromotionReport
) -> None:
    history = _history(registry)
    current = registry.alias(CHAMPION)
    if current and (not history or history[-1] != current):
        history.append(current)
    history.append(version)
    registry.set_alias(CHAMPION, version)
    if current and current != version:
        registry.set_alias(PREVIOUS, current)
    registry.set_model_tag(HISTORY_TAG, json.dumps(history))
    registry.tag_version(
        version,
        {
            "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "promotion_forced": str(forced).lower(),
        },
    )
    report.champion_after = version


def _record_decision(registry: tracking.Registry, report: PromotionReport) -> None:
    if report.candidate_version is None:
        return
    gates = "; ".join(
        f"{gate.name} {'pass' if gate.passed else 'FAIL'} "
        f"({gate.value if gate.value is None else round(gate.value, 6)} vs "
        f"{gate.threshold})"
        for gate in report.gates
    )
    registry.tag_version(
        report.candidate_version,
        {"promotion_decision": report.decision, "promotion_gates": gates[:5000]},
        description=f"{report.decision}{' (forced)' if report.forced else ''}: {report.reason}",
    )


def promote(
    params: Params, root: Path, *, version: str | None = None, force: bool = False
) -> PromotionReport:
    """Move ``champion`` to the best passing candidate (or to ``version``), gates permitting."""
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    registry = tracking.Registry(store, params.mlflow.registered_model_name)
    with registry_lock(root):
        champion_version = registry.alias(CHAMPION)
        report = PromotionReport(
            "rejected", None, None, champion_version, champion_version, forced=force
        )
        if version is not None:
            record = registry.version(version)
            if record is None:
                raise UserError(f"registered model '{registry.name}' has no version {version}")
            records = [record]
        else:
            found = [
                registry.version(load_trained(params, family).version)
                for family in FAMILIES
                if record_path(params, family).exists()
            ]
            records = [record for record in found if record is not None]
            if not records:
                raise UserError("no trained candidates; run the train stages first")
        candidates = sorted(
            (_scores_from_run(registry, record) for record in records),
            key=lambda item: item.test_accuracy,
            reverse=True,
        )
        report.candidates = [asdict(candidate) for candidate in candidates]
        champion = None
        champion_record = registry.version(champion_version) if champion_version else None
        if champion_record is not None:
            champion = _scores_from_run(registry, champion_record)
            if champion.data_md5 != candidates[0].data_md5:  # compare on the same data
                champion = rescore_on_current_test(params, store, champion_record)
        evaluated = [
            (candidate, evaluate_gates(candidate, champion, params.promote))
            for candidate in candidates
            if candidate.version != champion_version
        ]
        if not evaluated:
            report.decision, report.reason = (
                "skipped",
                f"version {champion_version} is already the champion",
            )
        else:
            passing = [pair for pair in evaluated if all(gate.passed for gate in pair[1])]
            chosen, gates = passing[0] if passing else evaluated[0]
            failed = [gate.name for gate in gates if not gate.passed]
            report.candidate_version, report.candidate_family = chosen.version, chosen.family
            report.gates = gates
            if not failed or force:
                report.decision = "promoted"
                report.reason = (
                    ("forced past failing gates: " + ", ".join(failed))
                    if failed
                    else "every gate passed"
                )
                _move_champion(registry, chosen.version, force, report)
            else:
                report.reason = "failed gates: " + ", ".join(failed)
        _record_decision(registry, report)
    return report


def rollback(params: Params, root: Path) -> tuple[str, str]:
    """Move ``champion`` back to the previous champion; return (from, to)."""
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    registry = tracking.Registry(store, params.mlflow.registered_model_name)
    with registry_lock(root):
        current = registry.alias(CHAMPION)
        history = _history(registry)
        if current is None:
            raise UserError(f"registered model '{registry.name}' has no champion to roll back")
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise UserError(f"version {current} is the first champion; nothing to roll back to")
        previous = history[-1]
        registry.set_alias(CHAMPION, previous)
        if len(history) >= 2:
            registry.set_alias(PREVIOUS, history[-2])
        else:
            registry.delete_alias(PREVIOUS)
        registry.set_model_tag(HISTORY_TAG, json.dumps(history))
        registry.tag_version(
            current, {"rolled_back_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        )
    return current, previous


def registry_table(params: Params, root: Path) -> str:
    """Versions, aliases, families and key metrics as a text table."""
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    registry = tracking.Registry(store, params.mlflow.registered_model_name)
    rows = [("version", "aliases", "family", "test_acc", "macro_f1", "ms/img", "decision")]
    for record in registry.versions():
        tags = record.tags
        rows.append(
            (
                record.version,
                ",".join(record.aliases) or "-",
                tags.get("family", "?"),
                tags.get("test_accuracy", "-")[:6],
                tags.get("test_macro_f1", "-")[:6],
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
