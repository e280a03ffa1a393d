"""The promote stage (and ``digits promote --version N``, ``digits rollback``): under the
promotion lock, move ``champion`` through the gates (promotion/decision.py) or back to the
previous champion, then write the champion's submission for data/test.csv.

Stages are deprecated in MLflow 3; ``champion`` is an alias (so there is only ever one), and the
registered model's ``champion_history`` tag keeps every earlier champion so rollback knows
where to go. Promotion and rollback hold a lock (``locks.registry_lock``: a file in the project
root for the local store, a PostgreSQL advisory lock for a team server), so two racing
promotions, from one machine or several, serialise instead of losing history.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from digit_recognizer import tracking
from digit_recognizer.config import Params
from digit_recognizer.config.environment import environment
from digit_recognizer.data.splits import split_path
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_json
from digit_recognizer.locks import registry_lock
from digit_recognizer.promotion.candidates import write_champion_submission
from digit_recognizer.promotion.champion import repair, roll_back
from digit_recognizer.promotion.decision import PromotionReport, decide, skipped


@contextlib.contextmanager
def _champion_held(params: Params, root: Path) -> Iterator[tracking.Registry]:
    """The registry under the promotion lock, a move a killed process left unfinished
    carried out first (promotion/champion.repair)."""
    store = tracking.Store.for_project(params.mlflow, root)
    tracking.activate(store)
    registry = tracking.Registry(store, params.mlflow.registered_model_name)
    with registry_lock(root, registry.name, store.uri, params.promote.lock_timeout_seconds) as held:
        registry.move_guard = held.confirm
        repaired = repair(registry)
        if repaired:
            print(f"registry: {repaired}", flush=True)
        yield registry


def promote(
    params: Params, root: Path, *, version: str | None = None, force: bool = False
) -> PromotionReport:
    """Move ``champion`` to the candidate chosen on validation (or to ``version``), gates
    permitting; then write the champion's submission for data/test.csv."""
    with _champion_held(params, root) as registry:
        experiment = environment().dvc_experiment
        if version is None and not params.promote.enabled:
            report = skipped(
                registry.alias(tracking.CHAMPION), force, "promote.enabled is false in params.yaml"
            )
        elif version is None and experiment and not params.promote.from_experiments:
            report = skipped(
                registry.alias(tracking.CHAMPION),
                force,
                f"experiment {experiment} does not move the champion (promote.from_experiments "
                "is false); promote its version deliberately with digits promote --version N",
            )
        else:
            report = decide(params, registry, version, force)
        if report.champion_after:
            write_champion_submission(params, registry.store, report.champion_after)
    return report


def rollback(params: Params, root: Path) -> tuple[str, str]:
    """Move ``champion`` back to the previous champion; return (from, to)."""
    with _champion_held(params, root) as registry:
        current = registry.alias(tracking.CHAMPION)
        if current is None:
            raise UserError(f"registered model '{registry.name}' has no champion to roll back")
        moved = roll_back(registry)
        if moved is None:
            raise UserError(f"version {current} is the first champion; nothing to roll back to")
        previous = moved[1]
        if split_path(Path(params.paths.prepared_dir), "test").exists():
            write_champion_submission(params, registry.store, previous)
    return current, previous


def main(params: Params, version: str | None, force: bool) -> None:
    """The stage (no ``version``: its report is a DVC metric) or a manual promotion."""
    manual = version is not None
    report = promote(params, tracking.project_root(), version=version, force=force)
    if not manual:  # the promote stage's DVC metric; manual promotions only print
        write_json(params.paths.promotion_report, report.as_json())
    for gate in report.gates:
        print(
            f"  gate {gate.name}: {'pass' if gate.passed else 'FAIL'} "
            f"(value {gate.value}, threshold {gate.threshold})"
        )
    if report.comparison is not None:
        comparison = report.comparison
        print(
            f"  McNemar on {comparison.images} {report.evaluation_split} images: candidate alone "
            f"right on {comparison.candidate_only_right}, champion alone on "
            f"{comparison.champion_only_right}, p = {comparison.p_value:.4g}"
        )
    subject = (
        f"version {report.candidate_version} ({report.candidate_family})"
        if report.candidate_version
        else "no candidate"
    )
    print(
        f"promote: {report.decision}: {subject}: {report.reason}; champion is now "
        f"{report.champion_after or 'none'}"
    )
    no_champion = (
        f"no champion yet, so no {params.paths.champion_submission}; lower the gates in "
        "params.yaml (promote) or force a version with digits promote --version N --force"
    )
    if report.champion_after:
        print(f"promote: {params.paths.champion_submission} holds the champion's predictions")
    elif manual:
        raise UserError(no_champion)
    else:  # the stage reports what the gates and params decided; that is not a failure
        print(f"promote: {no_champion}")


def main_rollback(params: Params) -> None:
    moved_from, moved_to = rollback(params, tracking.project_root())
    print(f"rollback: champion moved from version {moved_from} back to version {moved_to}")
    if params.paths.champion_submission.exists():
        submission = params.paths.champion_submission
        print(f"rollback: {submission} holds version {moved_to}'s predictions")
