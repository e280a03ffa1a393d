"""A Keras Tuner tuner whose every trial is a nested MLflow run, logged epoch by epoch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from digit_recognizer import tracking
from digit_recognizer.config import Family, Params
from digit_recognizer.models.hypermodel import make_hypermodel
from digit_recognizer.models.input_pipeline import EPOCH_METRICS
from digit_recognizer.search.identity import planned_trials
from digit_recognizer.search.trials import TrialRecord
from digit_recognizer.search.workarounds import save_tuner_state_atomically

OBJECTIVE = "val_accuracy"
ENDED_STATUSES = ("COMPLETED", "FAILED")


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


def tracked_tuner_class(
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


def make_tuner(
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
    tuner_class = tracked_tuner_class(base, runs, family, params.seed, planned, worker)
    return tuner_class(**common, **specific)


def trial_records(tuner: Any, space: dict[str, list[Any]]) -> list[TrialRecord]:
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
