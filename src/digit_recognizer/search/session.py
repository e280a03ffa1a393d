"""One search as every process of it sees it: the data, precision, fingerprint and store they
agree on, the tuner built from params, and the search run to its end."""

from __future__ import annotations

import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digit_recognizer import tracking
from digit_recognizer.config import Family, Params
from digit_recognizer.data.kaggle_csv import DigitTable
from digit_recognizer.data.splits import load_split, table_digest
from digit_recognizer.errors import UserError
from digit_recognizer.models.input_pipeline import (
    VALIDATION_BATCH_SIZE,
    model_input,
    steps_per_epoch,
    training_batches,
)
from digit_recognizer.models.schedule import cosine_schedule
from digit_recognizer.runtime.precision import PrecisionChoice, announce_compute, use_precision
from digit_recognizer.search.identity import search_fingerprint
from digit_recognizer.search.roles import (
    CHIEF_WAIT_SECONDS,
    LOCAL_ORACLE_IP,
    ORACLE_IP_VARIABLE,
    SearchRole,
    wait_for_search_run,
)
from digit_recognizer.search.tracked_tuner import OBJECTIVE, make_tuner
from digit_recognizer.search.workarounds import first_failure, one_line


def search_subset(table: DigitTable, fraction: float, seed: int) -> DigitTable:
    """A stratified share of the training split (the search need not see all of it)."""
    from sklearn.model_selection import train_test_split

    if fraction >= 1.0:
        return table
    assert table.labels is not None
    chosen, _ = train_test_split(
        np.arange(len(table)), train_size=fraction, random_state=seed, stratify=table.labels
    )
    chosen.sort()
    return DigitTable(table.images[chosen], table.labels[chosen])


@dataclass(frozen=True)
class SearchSetup:
    """What every process of one search agrees on: data, precision, fingerprint, store."""

    train: DigitTable
    validation: DigitTable
    precision: PrecisionChoice
    compute_params: dict[str, str]
    fingerprint: str
    directory: Path
    store: tracking.Store
    tags: dict[str, str]  # the search run's identity: stage, family, fingerprint


def set_up_search(params: Params, family: Family, root: Path, role: SearchRole) -> SearchSetup:
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    budget = params.tune.family(family).budget
    prepared_dir = Path(params.paths.prepared_dir)
    full_train = load_split(prepared_dir, "train")
    validation = load_split(prepared_dir, "validation")
    data_digest = table_digest(full_train) + table_digest(validation)
    label = f"tune {family}" + (f" [{role.tuner_id}]" if role.distributed else "")
    precision, compute_params = announce_compute(params.compute.precision, label)
    use_precision(precision)
    fingerprint = search_fingerprint(params, family, data_digest, precision)
    if role.distributed:  # the chief listens on, and workers dial, loopback unless told
        os.environ.setdefault(ORACLE_IP_VARIABLE, LOCAL_ORACLE_IP)
        compute_params["tuner_id"] = role.tuner_id
    return SearchSetup(
        train=search_subset(full_train, budget.search_fraction, params.seed),
        validation=validation,
        precision=precision,
        compute_params=compute_params,
        fingerprint=fingerprint,
        directory=params.paths.search_state(family),
        store=tracking.Store.for_project(params.mlflow, root),
        tags={"stage": "tune", "family": family, "search_fingerprint": fingerprint},
    )


def fit_arguments(params: Params, family: Family, setup: SearchSetup) -> dict[str, Any]:
    import keras

    budget = params.tune.family(family).budget
    train, validation = setup.train, setup.validation
    assert train.labels is not None and validation.labels is not None
    fit_arguments: dict[str, Any] = {
        "x": training_batches(train.images, train.labels, budget.batch_size, params.seed),
        "steps_per_epoch": steps_per_epoch(
            len(train), budget.batch_size, budget.min_steps_per_epoch
        ),
        "validation_data": (model_input(validation.images), validation.labels),
        "validation_batch_size": VALIDATION_BATCH_SIZE,
        "shuffle": False,  # the batches are shuffled already (Keras warns otherwise)
        "verbose": 0,
        "callbacks": [
            keras.callbacks.EarlyStopping(
                monitor=OBJECTIVE, patience=budget.early_stopping_patience
            ),
            *(
                [cosine_schedule(budget.max_epochs)]
                if budget.learning_rate_schedule == "cosine"
                else []
            ),
        ],
    }
    if params.tune.tuner != "hyperband":
        fit_arguments["epochs"] = budget.max_epochs
    return fit_arguments


def build_tuner(
    params: Params, family: Family, setup: SearchSetup, runs: tracking.ChildRuns, worker: str
) -> Any:
    state = setup.directory / setup.fingerprint
    fresh = not state.exists()
    try:  # Keras Tuner builds a first model from the space's defaults right here
        return make_tuner(params, family, runs, setup.directory, setup.fingerprint, worker)
    except (ValueError, TypeError) as error:
        if fresh:  # what the failed attempt created; saved searches stay
            shutil.rmtree(state, ignore_errors=True)
        raise UserError(
            f"tune {family}: the search space does not build a model: {one_line(str(error))}"
        ) from None


def run_search(
    tuner: Any, arguments: dict[str, Any], runs: tracking.ChildRuns, family: str
) -> None:
    try:
        tuner.search(**arguments)
    except RuntimeError as error:  # Keras Tuner gives up after consecutive failed trials
        runs.abort_open("FAILED")
        raise UserError(
            f"tune {family}: search stopped: {str(error).splitlines()[0]}; "
            f"first trial error: {first_failure(tuner)}"
        ) from None
    except BaseException:
        runs.abort_open("KILLED")
        traceback.print_exc(limit=0)
        raise


@dataclass(frozen=True)
class WorkerResult:
    family: Family
    worker_id: str
    trials_run: int
    duration_seconds: float
    parent_run_id: str


def run_search_worker(params: Params, family: Family, root: Path, role: SearchRole) -> WorkerResult:
    """One worker of a distributed search: trials from the chief's oracle, each a nested run
    under the chief's search run. The chief writes the stage's outputs."""
    setup = set_up_search(params, family, root, role)
    parent_id = wait_for_search_run(setup.store, setup.tags, CHIEF_WAIT_SECONDS)
    runs = tracking.ChildRuns(setup.store, parent_id, key_tag="trial_id")
    started = time.monotonic()
    tuner = build_tuner(params, family, setup, runs, role.tuner_id)
    run_search(tuner, fit_arguments(params, family, setup), runs, family)
    return WorkerResult(
        family, role.tuner_id, runs.finished_count, time.monotonic() - started, parent_id
    )
