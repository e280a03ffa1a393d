"""The tune stage: a Keras Tuner search over one family's space (from params.yaml).

Every trial is a nested MLflow run under one parent per search. The tuner's state lives in
``tuning/<family>/<fingerprint>``; the fingerprint covers the space, the budget, the tuner, the
seed, the data and the search's own code, so re-running after an interruption continues the
same search while any change to those starts a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from digit_recognizer import tracking
from digit_recognizer.config import Family, Params, SearchBudget
from digit_recognizer.data.kaggle_csv import DigitTable
from digit_recognizer.data.splits import load_split, prepared_data_md5, table_digest
from digit_recognizer.errors import UserError
from digit_recognizer.files import write_json, write_text
from digit_recognizer.models.architectures import build_model, hyperparameters_from
from digit_recognizer.models.fitting import (
    EPOCH_METRICS,
    VALIDATION_BATCH_SIZE,
    model_input,
    steps_per_epoch,
    training_batches,
)
from digit_recognizer.models.precision import (
    PrecisionChoice,
    announce_compute,
    use_precision,
)
from digit_recognizer.models.schedule import cosine_schedule
from digit_recognizer.reporting import TrialRecord, plot_search, trials_table

if TYPE_CHECKING:
    import keras_tuner

# Keras Tuner's distributed mode: one chief process holds the oracle and serves it over gRPC
# (no authentication), workers ask it for trials and share the search directory.
TUNER_ID_VARIABLE = "KERASTUNER_TUNER_ID"
ORACLE_IP_VARIABLE = "KERASTUNER_ORACLE_IP"
ORACLE_PORT_VARIABLE = "KERASTUNER_ORACLE_PORT"
LOCAL_ORACLE_IP = "127.0.0.1"  # where the chief listens unless KERASTUNER_ORACLE_IP says
SINGLE_TUNER_ID = "tuner0"  # Keras Tuner's id for a search in one process
CHIEF_WAIT_SECONDS = 300  # how long a worker waits for the chief's search run

OBJECTIVE = "val_accuracy"
ENDED_STATUSES = ("COMPLETED", "FAILED")
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


@dataclass(frozen=True)
class WorkerResult:
    family: Family
    worker_id: str
    trials_run: int
    duration_seconds: float
    parent_run_id: str


@dataclass(frozen=True)
class SearchRole:
    """This process's part in a search: alone, the chief (the oracle only) or a worker."""

    tuner_id: str
    distributed: bool

    @property
    def is_chief(self) -> bool:
        return self.distributed and "chief" in self.tuner_id  # Keras Tuner's own rule

    @property
    def is_worker(self) -> bool:
        return self.distributed and not self.is_chief


def search_role(environment: Mapping[str, str]) -> SearchRole:
    """Read Keras Tuner's variables; refuse a half-configured distributed search."""
    tuner_id = environment.get(TUNER_ID_VARIABLE)
    if not tuner_id:
        if ORACLE_IP_VARIABLE in environment:
            raise UserError(
                f"{ORACLE_IP_VARIABLE} is set but {TUNER_ID_VARIABLE} is not: give each process "
                "of a distributed search an id ('chief' for the oracle, any other for a worker)"
            )
        return SearchRole(SINGLE_TUNER_ID, distributed=False)
    if not environment.get(ORACLE_PORT_VARIABLE, "").isdigit():
        raise UserError(
            f"{TUNER_ID_VARIABLE}={tuner_id} needs {ORACLE_PORT_VARIABLE}, the chief's port "
            f"(got {environment.get(ORACLE_PORT_VARIABLE)!r})"
        )
    return SearchRole(tuner_id, distributed=True)


def wait_for_search_run(store: tracking.Store, tags: Mapping[str, str], seconds: float) -> str:
    """A worker's parent run: the chief's search run, once the chief has started it."""
    deadline = time.monotonic() + seconds
    while (run_id := tracking.find_run(store, tags)) is None:
        if time.monotonic() > deadline:
            raise UserError(
                f"no search run with fingerprint {tags['search_fingerprint']} in "
                f"{store.uri} after {seconds:.0f} s: start the chief first "
                f"({TUNER_ID_VARIABLE}=chief) with the same params.yaml, data and code"
            )
        time.sleep(1)
    return run_id


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


def code_digest() -> str:
    """The search's own code: a changed builder or search loop must not resume old trials."""
    from digit_recognizer.models import architectures, fitting, precision, schedule

    modules = (architectures, fitting, precision, schedule)
    sources = (Path(__file__), *(Path(str(module.__file__)) for module in modules))
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:16]


def search_fingerprint(
    params: Params, family: Family, data_digest: str, precision: PrecisionChoice
) -> str:
    family_config = params.tune.family(family)
    identity = {
        "family": family,
        "tuner": params.tune.tuner,
        "seed": params.seed,
        "precision": precision.policy,  # trials in bfloat16 and float32 do not mix
        "config": family_config.model_dump(),
        "data": data_digest,
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def choose_hyperparameters(
    hp: keras_tuner.HyperParameters, space: dict[str, list[Any]]
) -> dict[str, Any]:
    """Declare every search-space key as a choice and return this trial's values."""
    # Keras Tuner stores booleans as 0/1; give each value back its declared type.
    return {
        name: type(values[0])(hp.Choice(name, values, ordered=False))
        for name, values in space.items()
    }


def make_hypermodel(family: Family, space: dict[str, list[Any]]) -> keras_tuner.HyperModel:
    """The thin ``hp`` wrapper around the plain builder (the KerasTuner guide's pattern)."""
    import keras_tuner

    class FamilyHyperModel(keras_tuner.HyperModel):
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return build_model(hyperparameters_from(family, choose_hyperparameters(hp, space)))

    return FamilyHyperModel(name=family)


def planned_trials(tuner_name: str, budget: SearchBudget) -> int:
    """How many trials the search will run (Hyperband: its brackets' successive halvings)."""
    if tuner_name != "hyperband":
        return budget.max_trials
    factor, max_epochs = budget.hyperband_factor, budget.max_epochs
    brackets = 0
    epochs: float = max_epochs
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    return sum(
        math.ceil(end_size / (bracket + 1) * factor ** (bracket - round_number))
        for bracket in range(brackets)
        for round_number in range(bracket + 1)
    )


class _EpochLogger:
    """Keras callback logging epochs to the trial's MLflow run; survives the tuner's deepcopy."""

    def __init__(self, runs: tracking.ChildRuns) -> None:
        import keras

        class Callback(keras.callbacks.Callback):
            trial_key = ""

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                metrics = {
                    name: value for name, value in (logs or {}).items() if name in EPOCH_METRICS
                }
                runs.log_metrics(self.trial_key, metrics, step=epoch + 1)

            def __deepcopy__(self, memo: dict[int, Any]) -> Any:
                return self

        self.callback = Callback()


def _tracked_tuner_class(
    base: type, runs: tracking.ChildRuns, family: Family, seed: int, planned: int, worker: str
) -> type:
    """Subclass a Keras Tuner class so that each trial's lifecycle drives its MLflow run."""
    import keras

    logger = _EpochLogger(runs)

    class TrackedTuner(base):
        search_started = time.monotonic()
        trial_started: dict[str, float] = {}  # noqa: RUF012 (one search per class)

        def on_trial_begin(self, trial: Any) -> None:
            super().on_trial_begin(trial)
            values = {key: value for key, value in trial.hyperparameters.values.items()}
            self.trial_started[trial.trial_id] = time.monotonic()
            runs.start(
                trial.trial_id,
                f"{family}-trial-{trial.trial_id}",
                values,
                {"family": family, "stage": "tune", "trial_id": trial.trial_id, "worker": worker},
            )

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            keras.utils.set_random_seed(seed)  # each trial starts from the same seed: resumable
            logger.callback.trial_key = trial.trial_id
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), logger.callback]
            return super().run_trial(trial, *args, **kwargs)

        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)  # the oracle settles the final status here
            trial = self.oracle.get_trial(trial.trial_id)  # from the chief, when distributed
            status = str(trial.status)
            duration = time.monotonic() - self.trial_started.pop(trial.trial_id, time.monotonic())
            metrics = {"duration_seconds": duration}
            if trial.score is not None:
                metrics["score"] = float(trial.score)
            tags = {
                "trial_status": status,
                tracking.NOTE_TAG: (
                    f"{family} trial {trial.trial_id}: validation accuracy {trial.score:.2%}"
                    if trial.score is not None
                    else f"{family} trial {trial.trial_id}: {status.lower()}"
                ),
            }
            if trial.message:
                tags["error"] = trial.message.strip().splitlines()[-1][:500]
            runs.finish(
                trial.trial_id, "FINISHED" if status == "COMPLETED" else "FAILED", metrics, tags
            )
            score_text = f"{trial.score:.4f}" if trial.score is not None else status.lower()
            best = self.oracle.get_best_trials(1)
            best_text = f"{best[0].score:.4f}" if best and best[0].score is not None else "-"
            if hasattr(self.oracle, "trials"):  # the oracle is in this process: count its trials
                ended = [t for t in self.oracle.trials.values() if t.status in ENDED_STATUSES]
                position = f"trial {len(ended)} of {planned} ({trial.trial_id})"
            else:
                position = f"worker {worker}: trial {trial.trial_id}"
            print(
                f"tune {family}: {position} {duration:.0f}s, score {score_text}, "
                f"best {best_text}, elapsed {time.monotonic() - self.search_started:.0f}s",
                flush=True,
            )

    return TrackedTuner


def save_tuner_state_atomically() -> None:
    """Keras Tuner writes its oracle and trial JSON in place; a search killed during a write
    left an empty oracle.json that no resume could read. Route its writes through this
    project's write-then-rename, so a killed search leaves the old state or the new one."""
    from keras_tuner.src import utils as tuner_utils

    def save_json(path: str, state: Any) -> str:
        text = json.dumps(state)
        write_text(Path(path), text)
        return text

    tuner_utils.save_json = save_json


def requeue_orphaned_trials(oracle: Any) -> list[str]:
    """Queue again the trials a kill left behind; return their ids.

    Keras Tuner writes a new trial's file before it records the trial as ongoing: a search
    killed between the two writes leaves a trial RUNNING that the reloaded oracle neither
    retries nor replaces, so it would never run and the search would end a trial short. The
    oracle retries what is in its retry queue (private, as Keras Tuner has no public way).
    """
    queued = set(oracle._retry_queue)
    orphaned = [
        trial_id
        for trial_id, trial in sorted(oracle.trials.items())
        if str(trial.status) == "RUNNING" and trial_id not in queued
    ]
    oracle._retry_queue.extend(orphaned)
    return orphaned


def _make_tuner(
    params: Params,
    family: Family,
    runs: tracking.ChildRuns,
    directory: Path,
    project_name: str,
    worker: str,
) -> Any:
    import keras_tuner

    save_tuner_state_atomically()

    budget = params.tune.family(family).budget
    space = params.tune.family(family).space.model_dump()
    planned = planned_trials(params.tune.tuner, budget)
    common: dict[str, Any] = {
        "hypermodel": make_hypermodel(family, space),
        "objective": OBJECTIVE,
        "directory": str(directory),
        "project_name": project_name,
        "seed": params.seed,
        "overwrite": False,
        "max_retries_per_trial": 0,
    }
    if params.tune.tuner == "hyperband":
        base: type = keras_tuner.Hyperband
        specific: dict[str, Any] = {
            "max_epochs": budget.max_epochs,
            "factor": budget.hyperband_factor,
            "hyperband_iterations": 1,
        }
    else:
        base = (
            keras_tuner.BayesianOptimization
            if params.tune.tuner == "bayesian"
            else keras_tuner.RandomSearch
        )
        specific = {"max_trials": budget.max_trials}
    tuner_class = _tracked_tuner_class(base, runs, family, params.seed, planned, worker)
    return tuner_class(**common, **specific)


def _trial_records(tuner: Any, space: dict[str, list[Any]]) -> list[TrialRecord]:
    """Every trial with its hyperparameters in their declared types (Keras Tuner keeps
    booleans as 0/1, which tables and charts would show)."""
    return [
        TrialRecord(
            trial_id=trial.trial_id,
            status=str(trial.status),
            score=None if trial.score is None else float(trial.score),
            hyperparameters={
                key: type(space[key][0])(value)
                for key, value in trial.hyperparameters.values.items()
                if key in space
            },
        )
        for trial in sorted(tuner.oracle.trials.values(), key=lambda item: item.trial_id)
    ]


def one_line(message: str, limit: int = 300) -> str:
    """Keras errors span many lines with terminal colours; keep their words on one line."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    return " ".join(line.strip() for line in plain.splitlines() if line.strip())[:limit]


def exception_summary(trace: str) -> str:
    """From a trial's traceback: the exception's first line and its last meaningful line."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", trace).strip().splitlines()
    frames = [index for index, line in enumerate(lines) if line.startswith("  File ")]
    tail = [
        line.strip()
        for line in lines[frames[-1] + 1 if frames else 0 :]
        if line.strip() and not line.startswith(" ")
    ]
    meaningful = [line for line in tail if "{{node" not in line and not line.startswith("[[")]
    if not meaningful:
        return one_line(trace)
    first, last = meaningful[0], meaningful[-1]
    return one_line(first if first == last else f"{first} ... {last}")


def _first_failure(tuner: Any) -> str:
    # a worker's oracle is the chief's proxy, which lists no trials: its own failure then
    for trial in getattr(tuner.oracle, "trials", {}).values():
        if trial.message:
            return exception_summary(str(trial.message))
    return "no trial completed"


def better_than_chance(score: float, validation_labels: npt.NDArray[np.uint8]) -> float:
    """One-sided exact binomial p-value that ``score`` beats always guessing the commonest
    digit on these validation rows (small means a real signal)."""
    from scipy.stats import binomtest

    rows = len(validation_labels)
    chance = float(np.bincount(validation_labels, minlength=10).max()) / rows
    return float(binomtest(round(score * rows), rows, chance, alternative="greater").pvalue)


def remove_other_searches(directory: Path, fingerprint: str) -> None:
    """Drop saved searches of other spaces, budgets or data (called once the new one builds)."""
    for stale in directory.glob("*") if directory.exists() else []:
        if stale.name != fingerprint:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


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


def _set_up_search(params: Params, family: Family, root: Path, role: SearchRole) -> SearchSetup:
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
        directory=Path(params.paths.tuning_dir) / family,
        store=tracking.Store.for_project(params.mlflow, root),
        tags={"stage": "tune", "family": family, "search_fingerprint": fingerprint},
    )


def _fit_arguments(params: Params, family: Family, setup: SearchSetup) -> dict[str, Any]:
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


def _build_tuner(
    params: Params, family: Family, setup: SearchSetup, runs: tracking.ChildRuns, worker: str
) -> Any:
    state = setup.directory / setup.fingerprint
    fresh = not state.exists()
    try:  # Keras Tuner builds a first model from the space's defaults right here
        return _make_tuner(params, family, runs, setup.directory, setup.fingerprint, worker)
    except (ValueError, TypeError) as error:
        if fresh:  # what the failed attempt created; saved searches stay
            shutil.rmtree(state, ignore_errors=True)
        raise UserError(
            f"tune {family}: the search space does not build a model: {one_line(str(error))}"
        ) from None


def _search(
    tuner: Any, fit_arguments: dict[str, Any], runs: tracking.ChildRuns, family: str
) -> None:
    try:
        tuner.search(**fit_arguments)
    except RuntimeError as error:  # Keras Tuner gives up after consecutive failed trials
        runs.abort_open("FAILED")
        raise UserError(
            f"tune {family}: search stopped: {str(error).splitlines()[0]}; "
            f"first trial error: {_first_failure(tuner)}"
        ) from None
    except BaseException:
        runs.abort_open("KILLED")
        traceback.print_exc(limit=0)
        raise


def run_search_worker(params: Params, family: Family, root: Path) -> WorkerResult:
    """One worker of a distributed search: trials from the chief's oracle, each a nested run
    under the chief's search run. The chief writes the stage's outputs."""
    role = search_role(os.environ)
    setup = _set_up_search(params, family, root, role)
    parent_id = wait_for_search_run(setup.store, setup.tags, CHIEF_WAIT_SECONDS)
    runs = tracking.ChildRuns(setup.store, parent_id, key_tag="trial_id")
    started = time.monotonic()
    tuner = _build_tuner(params, family, setup, runs, role.tuner_id)
    _search(tuner, _fit_arguments(params, family, setup), runs, family)
    return WorkerResult(
        family, role.tuner_id, runs.finished_count, time.monotonic() - started, parent_id
    )


def run_tune(params: Params, family: Family, root: Path) -> TuneResult:
    """Search one family's space; write best hyperparameters, a summary, trials table and chart.

    Alone, this process runs every trial; as the chief of a distributed search it holds the
    oracle while workers (``run_search_worker``) run the trials, then writes the same outputs.
    """
    role = search_role(os.environ)
    setup = _set_up_search(params, family, root, role)
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
        {**setup.tags, **tracking.lineage_tags(root, prepared_data_md5(params.paths))},
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
        tuner = _build_tuner(params, family, setup, runs, role.tuner_id)
        requeue_orphaned_trials(tuner.oracle)
        # Only now that the new space builds: a typo in params.yaml keeps the old search.
        remove_other_searches(setup.directory, setup.fingerprint)
        _search(tuner, _fit_arguments(params, family, setup), runs, family)
        trials = _trial_records(tuner, family_config.space.model_dump())
        completed = [trial for trial in trials if trial.status == "COMPLETED"]
        if not completed:
            raise UserError(
                f"tune {family}: no trial succeeded ({len(trials)} failed); "
                f"first error: {_first_failure(tuner)}"
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
        write_json(Path(params.paths.hyperparameters_dir) / f"{family}.json", best)
        write_json(params.paths.search_summary(family), summary)
        write_json(params.paths.search_metrics(family), {"best_score": best_score})
        table_path = Path(params.paths.reports_dir) / "tuning" / f"{family}_trials.csv"
        chart_path = Path(params.paths.reports_dir) / "tuning" / f"{family}_search.png"
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
