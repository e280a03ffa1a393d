"""Search: trials are nested MLflow runs, searches resume after a kill, crashes are not hidden."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from digit_recognizer import tracking
from digit_recognizer.cli import main
from digit_recognizer.config import load_params
from digit_recognizer.data.kaggle_csv import DigitTable
from digit_recognizer.data.splits import load_split, save_split
from digit_recognizer.errors import UserError
from digit_recognizer.models.input_pipeline import steps_per_epoch
from digit_recognizer.search.roles import search_role
from tests.helpers.project import REPOSITORY
from tests.helpers.servers import free_port

DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


def child_runs(parent_run_id: str) -> list[mlflow.entities.Run]:
    return mlflow.search_runs(
        experiment_names=["digit-recognizer"],
        output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
    )


def tune_parents(family: str) -> list[mlflow.entities.Run]:
    """Search runs (parents) of a family, newest first; trial runs are their children."""
    runs = mlflow.search_runs(
        experiment_names=["digit-recognizer"],
        output_format="list",
        filter_string=f"tags.stage = 'tune' and tags.family = '{family}'",
    )
    return [run for run in runs if "mlflow.parentRunId" not in run.data.tags]


@pytest.mark.usefixtures("prepared_project")
def test_search_logs_a_parent_with_one_nested_run_per_trial(project: Path) -> None:
    # when the ANN search runs
    assert main(["tune", "ann"]) == 0
    # then the parent holds the best hyperparameters, and each trial is a finished child run
    parent = tune_parents("ann")[0]
    assert parent.info.status == "FINISHED"
    best = json.loads(Path("hyperparameters/ann.json").read_text())
    assert parent.data.params["best.units"] == str(best["units"])
    children = child_runs(parent.info.run_id)
    summary = json.loads(Path("reports/tuning/ann_summary.json").read_text())
    assert len(children) == summary["trials_completed"] == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"units", "activation", "learning_rate"} <= set(child.data.params)
        history = mlflow.MlflowClient().get_metric_history(child.info.run_id, "val_accuracy")
        assert [metric.step for metric in history] == list(range(1, len(history) + 1))
    assert Path("reports/tuning/ann_trials.csv").read_text().count("\n") == 3


@pytest.mark.slow  # two whole searches, about 30 s
@pytest.mark.usefixtures("prepared_project")
def test_same_seed_gives_the_same_trials(project: Path) -> None:
    assert main(["tune", "cnn"]) == 0
    first = Path("reports/tuning/cnn_trials.csv").read_text()
    for path in Path("tuning/cnn").iterdir():
        subprocess.run(["rm", "-rf", str(path)], check=True)
    assert main(["tune", "cnn"]) == 0
    assert Path("reports/tuning/cnn_trials.csv").read_text() == first


@pytest.mark.usefixtures("prepared_project")
def test_a_search_where_every_trial_crashes_fails_clearly(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given training labels that make every fit crash (like a missing module once did)
    train = load_split(Path("prepared"), "train")
    assert train.labels is not None
    save_split(Path("prepared/train.npz"), DigitTable(train.images, train.labels + 50))
    # when the search runs, then the stage fails in one line naming the trial error
    assert main(["tune", "ann"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("digits tune: error: tune ann: no trial succeeded"), error
    assert "is not in [0, 10)" in error, error
    # and nothing stays RUNNING: the parent and every trial are FAILED
    parent = tune_parents("ann")[0]
    assert parent.info.status == "FAILED"
    trials = child_runs(parent.info.run_id)
    assert trials and {child.info.status for child in trials} == {"FAILED"}
    assert {child.data.tags["trial_status"] for child in trials} == {"FAILED"}
    assert not Path("hyperparameters/ann.json").exists()


@pytest.mark.usefixtures("prepared_project")
def test_a_space_that_cannot_build_is_refused(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["tune"]["cnn"]["space"]["conv_blocks"] = [6]  # six poolings do not fit 28x28
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["tune", "cnn"]) == 2
    error = capsys.readouterr().err.strip()
    assert "the search space does not build a model" in error and "\n" not in error
    assert tune_parents("cnn")[0].info.status == "FAILED"


def four_trial_search() -> None:
    """The project's ANN search as four random trials (units 8 to 64)."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["tune"]["tuner"] = "random"
    params["tune"]["ann"]["budget"]["max_trials"] = 4
    params["tune"]["ann"]["space"]["units"] = [8, 16, 32, 64]
    Path("params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_killed_search_resumes_without_repeating_or_duplicating_trials(project: Path) -> None:
    # given a search with several trials
    four_trial_search()
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src")}
    # when it is killed (SIGKILL: no clean-up at all) after its first trial
    process = subprocess.Popen(
        [*DIGITS, "tune", "ann"], stdout=subprocess.PIPE, text=True, env=environment
    )
    assert process.stdout is not None
    first_lines = []
    for line in process.stdout:
        first_lines.append(line)
        if "trial 1 of 4" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    parent_before = tune_parents("ann")[0]
    finished_before = {
        run.data.tags["trial_id"]: run.info.run_id
        for run in child_runs(parent_before.info.run_id)
        if run.info.status == "FINISHED"
    }
    assert len(finished_before) == 1, first_lines
    # and run again
    resumed = subprocess.run(
        [*DIGITS, "tune", "ann"], capture_output=True, text=True, env=environment
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # then the finished trial is neither repeated nor duplicated, and the search completes
    assert "trial 1 of 4" not in resumed.stdout, resumed.stdout
    fingerprint = parent_before.data.tags["search_fingerprint"]
    parents = [
        run for run in tune_parents("ann") if run.data.tags["search_fingerprint"] == fingerprint
    ]
    assert [run.info.run_id for run in parents] == [parent_before.info.run_id]
    children = child_runs(parent_before.info.run_id)
    assert sorted(run.data.tags["trial_id"] for run in children) == ["0", "1", "2", "3"]
    assert {run.info.status for run in children} == {"FINISHED"}
    for trial_id, run_id in finished_before.items():
        assert {run.info.run_id for run in children if run.data.tags["trial_id"] == trial_id} == {
            run_id
        }
    assert parents[0].info.status == "FINISHED"


@pytest.mark.usefixtures("prepared_project")
def test_changed_space_starts_a_fresh_search(project: Path) -> None:
    assert main(["tune", "ann"]) == 0
    before = {path.name for path in Path("tuning/ann").iterdir()}
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["tune"]["ann"]["space"]["units"] = [24]
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["tune", "ann"]) == 0
    after = {path.name for path in Path("tuning/ann").iterdir()}
    assert len(before) == len(after) == 1 and before != after
    assert json.loads(Path("hyperparameters/ann.json").read_text())["units"] == 24
    assert load_params(Path("params.yaml")).tune.ann.space.units == [24]


@pytest.mark.usefixtures("prepared_project")
def test_a_space_typo_keeps_the_saved_search(project: Path) -> None:
    # given a finished search
    assert main(["tune", "cnn"]) == 0
    saved = sorted(Path("tuning/cnn").iterdir())
    # when params.yaml gets a space that cannot build a model
    params = yaml.safe_load(Path("params.yaml").read_text())
    good = list(params["tune"]["cnn"]["space"]["conv_blocks"])
    params["tune"]["cnn"]["space"]["conv_blocks"] = [6]
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["tune", "cnn"]) == 2
    # then the saved search is still there, and fixing the typo finds it again
    assert sorted(Path("tuning/cnn").iterdir()) == saved, "a typo must not throw the search away"
    params["tune"]["cnn"]["space"]["conv_blocks"] = good
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["tune", "cnn"]) == 0
    assert sorted(Path("tuning/cnn").iterdir()) == saved


@pytest.mark.usefixtures("prepared_project")
def test_a_search_resumed_on_another_thread_budget_keeps_its_run(project: Path) -> None:
    # given a search run on one thread (as under `dvc queue start -j 2`), with a seed of its
    # own so that no other test's search in the session store is resumed
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["seed"], params["compute"]["threads"] = 7, 1
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["tune", "ann"]) == 0
    # when the same search runs again on two threads
    params["compute"]["threads"] = 2
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["tune", "ann"]) == 0
    # then it resumes the same run: the first budget stays its param, the second is a tag
    [parent] = [run for run in tune_parents("ann") if run.data.params["seed"] == "7"]
    assert parent.data.params["threads"] == "1"
    assert "threads=2" in parent.data.tags["resumed_with"]


@pytest.mark.usefixtures("prepared_project")
def test_a_search_no_better_than_chance_fails_the_stage(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given labels that carry no information about the images
    for split in ("train", "validation"):
        table = load_split(Path("prepared"), split)
        assert table.labels is not None
        shuffled = np.random.default_rng(1).permutation(table.labels)
        save_split(Path("prepared") / f"{split}.npz", DigitTable(table.images, shuffled))
    capsys.readouterr()
    # when the search runs, then it fails in one line and passes no hyperparameters on
    assert main(["tune", "ann"]) == 2
    error = capsys.readouterr().err.strip()
    assert "no better than chance" in error and "\n" not in error, error
    assert not Path("hyperparameters/ann.json").exists()


def test_small_data_gets_enough_steps_per_epoch() -> None:
    assert steps_per_epoch(30, batch_size=8, min_steps=20) == 20, "30 rows: passed over 5 times"
    assert steps_per_epoch(400, batch_size=8, min_steps=20) == 50, "enough data: one pass"


def test_tuner_state_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    from keras_tuner.src import utils as tuner_utils

    from digit_recognizer.search.workarounds import save_tuner_state_atomically

    # given Keras Tuner's JSON writer routed through write-then-rename
    save_tuner_state_atomically()
    state = tmp_path / "oracle.json"
    tuner_utils.save_json(str(state), {"trials": 1})
    # when a later write fails half-way (here: state that cannot be serialised)
    with pytest.raises(TypeError):
        tuner_utils.save_json(str(state), {"trials": object()})
    # then the file still holds the last whole state, and no temporary file is left
    assert tuner_utils.load_json(str(state)) == {"trials": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["oracle.json"]


def test_a_trial_orphaned_by_a_kill_is_run_again(tmp_path: Path) -> None:
    import keras_tuner

    from digit_recognizer.search.workarounds import requeue_orphaned_trials

    # given a reloaded oracle holding a trial that was written RUNNING but never recorded as
    # ongoing (the process died between Keras Tuner's two writes)
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=3)
    oracle._set_project_dir(str(tmp_path), "search")
    oracle.hyperparameters.Choice("units", [8, 16, 32])
    first = oracle.create_trial("tuner0")
    oracle.ongoing_trials = {}
    # when orphaned trials are queued again
    assert requeue_orphaned_trials(oracle) == [first.trial_id]
    assert requeue_orphaned_trials(oracle) == [], "queued once"
    # then the oracle hands that same trial out next, instead of a new one
    assert oracle.create_trial("tuner0").trial_id == first.trial_id


@pytest.mark.slow
@pytest.mark.usefixtures("prepared_project")
def test_distributed_search_nests_every_workers_trials_under_the_chiefs_run(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a store of its own (the kill test's search has the same fingerprint) made by the
    # stages before, a search of four trials, and Keras Tuner's variables for a chief and two
    # workers
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'distributed.db'}")
    tracking.activate(tracking.Store.for_project(load_params(Path("params.yaml")).mlflow, project))
    four_trial_search()
    base = {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY / "src"),
        "KERASTUNER_ORACLE_PORT": str(free_port()),  # no IP given: the chief binds 127.0.0.1
    }
    # when the chief and two workers run as local processes
    processes = {
        tuner_id: subprocess.Popen(
            [*DIGITS, "tune", "ann"],
            env={**base, "KERASTUNER_TUNER_ID": tuner_id},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for tuner_id in ("chief", "worker-1", "worker-2")
    }
    outputs = {
        tuner_id: process.communicate(timeout=600)[0] for tuner_id, process in processes.items()
    }
    # then all three succeed, and the chief wrote the stage's outputs
    for tuner_id, process in processes.items():
        assert process.returncode == 0, f"{tuner_id}:\n{outputs[tuner_id][-3000:]}"
    best = json.loads(Path("hyperparameters/ann.json").read_text())
    assert best["units"] in (8, 16, 32, 64)
    assert json.loads(Path("reports/tuning/ann_summary.json").read_text())["trials_completed"] == 4
    # and every trial is one finished run under the chief's one search run, tagged by worker
    parents = tune_parents("ann")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = child_runs(parents[0].info.run_id)
    assert sorted(run.data.tags["trial_id"] for run in children) == ["0", "1", "2", "3"]
    assert {run.info.status for run in children} == {"FINISHED"}
    assert {run.data.tags["worker"] for run in children} == {"worker-1", "worker-2"}, outputs


def test_a_half_configured_distributed_search_is_refused() -> None:
    assert not search_role({}).distributed
    assert search_role({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_PORT": "8000"}).is_chief
    worker = search_role({"KERASTUNER_TUNER_ID": "w1", "KERASTUNER_ORACLE_PORT": "8000"})
    assert worker.is_worker and worker.tuner_id == "w1"
    with pytest.raises(UserError, match="KERASTUNER_ORACLE_PORT"):
        search_role({"KERASTUNER_TUNER_ID": "w1"})
    with pytest.raises(UserError, match="KERASTUNER_TUNER_ID"):
        search_role({"KERASTUNER_ORACLE_IP": "10.0.0.2", "KERASTUNER_ORACLE_PORT": "8000"})
