"""The tune stage: a Keras Tuner search over one family's space (from params.yaml).

Every trial is a nested MLflow run under one parent per search. The tuner's state lives in
``tuning/<family>/<fingerprint>``; the fingerprint covers the space, the budget, the tuner, the
seed, the data and the search's own code, so re-running after an interruption continues the
same search while any change to those starts a fresh one. Alone, this process runs every trial;
in a distributed search the chief holds the oracle and writes the outputs, workers run trials.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digit_recognizer import tracking
from digit_recognizer.config import Family, Params
from digit_recognizer.data.splits import prepared_data_md5
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_json
from digit_recognizer.models.hypermodel import choose_hyperparameters
from digit_recognizer.search.identity import remove_other_searches
from digit_recognizer.search.roles import SearchRole, search_role
from digit_recognizer.search.session import (
    build_tuner,
    fit_arguments,
    run_search,
    run_search_worker,
    set_up_search,
)
from digit_recognizer.search.tracked_tuner import trial_records
from digit_recognizer.search.trials import (
    TrialRecord,
    better_than_chance,
    plot_search,
    trials_table,
)
from digit_recognizer.search.workarounds import first_failure, requeue_orphaned_trials

# A best trial whose validation score could be chance at this level fails the search.
CHANCE_LEVEL_P_VALUE = 0.01


@dataclass(frozen=True)
class TuneResult:
    family: Family
    best_hyperparameters: dict[str, Any]
    best_score: float
    trials: list[TrialRecord]
    duration_seconds: float
    run_id: str


def run_tune(params: Params, family: Family, root: Path, role: SearchRole) -> TuneResult:
    """Search one family's space; write best hyperparameters, a summary, trials table and chart.

    Alone, this process runs every trial; as the chief of a distributed search it holds the
    oracle while workers (``run_search_worker``) run the trials, then writes the same outputs.
    """
    setup = set_up_search(params, family, root, role)
    family_config = params.tune.family(family)
    budget = family_config.budget
    train, validation = setup.train, setup.validation
    assert validation.labels is not None
    store = setup.store
    parent_id = tracking.find_run(store, setup.tags)
    started = time.monotonic()
    with tracking.run(
        store,
        f"tune-{family}",
        {
            **tracking.lineage_tags(root, prepared_data_md5(params.paths), "tune", family),
            **setup.tags,
        },
        run_id=parent_id,
    ) as run_id:
        search_params = {
            "tuner": params.tune.tuner,
            "seed": params.seed,
            "train_rows": len(train),
            "validation_rows": len(validation),
            **{f"budget.{k}": v for k, v in budget.model_dump().items()},
            **{f"space.{k}": v for k, v in family_config.space.model_dump().items()},
        }
        if parent_id is None:
            tracking.log_params({**search_params, **setup.compute_params})
        else:
            # A resumed search is the same search (same fingerprint), but this process may run
            # on another thread budget; MLflow refuses to change a logged param, so the params
            # keep the first process's and a tag names this one's.
            tracking.log_params(search_params)
            resumed_with = ", ".join(f"{k}={v}" for k, v in setup.compute_params.items())
            tracking.set_tags({"resumed_with": resumed_with})
        runs = tracking.ChildRuns(store, run_id, key_tag="trial_id")
        tuner = build_tuner(params, family, setup, runs, role.tuner_id)
        requeue_orphaned_trials(tuner.oracle)
        # Only now that the new space builds: a typo in params.yaml keeps the old search.
        remove_other_searches(setup.directory, setup.fingerprint)
        run_search(tuner, fit_arguments(params, family, setup), runs, family)
        trials = trial_records(tuner, family_config.space.model_dump())
        completed = [trial for trial in trials if trial.status == "COMPLETED"]
        if not completed:
            raise UserError(
                f"tune {family}: no trial succeeded ({len(trials)} failed); "
                f"first error: {first_failure(tuner)}"
            )
        best_trial = tuner.oracle.get_best_trials(1)[0]
        best = choose_hyperparameters(best_trial.hyperparameters, family_config.space.model_dump())
        best_score = float(best_trial.score)
        chance_p_value = better_than_chance(best_score, validation.labels)
        if chance_p_value > CHANCE_LEVEL_P_VALUE:
            raise UserError(
                f"tune {family}: the best trial scored {best_score:.4f} on {len(validation)} "
                f"validation rows, no better than chance (p = {chance_p_value:.2f}); "
                f"give the search more data or epochs (tune.{family}.budget)"
            )
        duration = time.monotonic() - started
        summary = {
            "best_score": best_score,
            "trials_completed": len(completed),
            "trials_failed": len(trials) - len(completed),
            "search_seconds": round(duration, 1),
        }
        write_json(params.paths.best_hyperparameters(family), best)
        write_json(params.paths.search_summary(family), summary)
        write_json(params.paths.search_metrics(family), {"best_score": best_score})
        table_path = params.paths.search_table(family)
        chart_path = params.paths.search_chart(family)
        trials_table(trials, table_path)
        plot_search(trials, family, chart_path)
        tracking.describe_run(
            f"{family} search ({params.tune.tuner}): best validation accuracy {best_score:.2%} "
            f"over {len(completed)} trials in {duration:.0f} s"
        )
        tracking.log_params({f"best.{key}": value for key, value in best.items()})
        tracking.log_metrics(
            {
                "best_score": best_score,
                "trials_completed": len(completed),
                "trials_failed": len(trials) - len(completed),
            }
        )
        tracking.log_artifacts([table_path, chart_path], "tuning")
    return TuneResult(family, best, best_score, trials, duration, run_id)


def main(params: Params, family: Family) -> None:
    root = tracking.project_root()
    role = search_role(os.environ)
    if role.is_worker:  # KERASTUNER_TUNER_ID names a worker
        worker = run_search_worker(params, family, root, role)
        print(
            f"tune {worker.family}: worker {worker.worker_id} finished {worker.trials_run} "
            f"trials in {worker.duration_seconds:.0f}s; the chief writes the results; "
            f"MLflow run {worker.parent_run_id}"
        )
        return
    result = run_tune(params, family, root, role)
    print(
        f"tune {result.family}: best validation accuracy {result.best_score:.4f} with "
        f"{result.best_hyperparameters} ({len(result.trials)} trials, "
        f"{result.duration_seconds:.0f}s); MLflow run {result.run_id}"
    )
