"""Team mode on the DVC side: results shared through a DVC remote, queued experiments that
reuse the work already cached. Real `dvc` commands in temporary git repositories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow
import pytest

from tests.helpers.pipeline import ran_stages, run
from tests.helpers.project import ReproducedProject

QUEUE_TIMEOUT_SECONDS = 900


def clone(origin: Path, folder: Path, environment: dict[str, str]) -> dict[str, str]:
    """A teammate's clone, with their own MLflow store."""
    run(
        ["git", "clone", "-q", "--branch", "main", str(origin), str(folder)],
        folder.parent,
        environment,
    )
    run(["git", "config", "user.email", "mate@example.com"], folder, environment)
    run(["git", "config", "user.name", "mate"], folder, environment)
    return {
        **environment,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder.parent / folder.name}-mlflow.db",
    }


def origin_of(folder: Path, environment: dict[str, str]) -> Path:
    return Path(run(["git", "remote", "get-url", "origin"], folder, environment).strip())


@pytest.mark.slow
def test_a_pulled_clone_is_up_to_date_and_repro_is_a_no_op(
    reproduced: ReproducedProject, tmp_path: Path
) -> None:
    # given a project whose results were pushed to the team's remotes
    first, environment = reproduced.folder, reproduced.environment
    run(["dvc", "push"], first, environment)

    # when a teammate clones it and pulls
    second = tmp_path / "second"
    teammate = clone(origin_of(first, environment), second, environment)
    run(["dvc", "pull"], second, teammate)

    # then every output is there, the Keras Tuner state included, and nothing needs to run
    assert (second / "models/cnn.keras").exists() and any((second / "tuning/ann").iterdir())
    status = run(["dvc", "status"], second, teammate)
    assert "Data and pipelines are up to date" in status, status
    assert ran_stages(run(["dvc", "repro"], second, teammate)) == set()


def run_queued_side_by_side(
    folder: Path, environment: dict[str, str], epochs: tuple[int, int]
) -> tuple[str, str]:
    """Queue two MLP trainings and run them with two queue workers; their names."""
    names = (f"ann-epochs-{epochs[0]}", f"ann-epochs-{epochs[1]}")
    for epoch_count, name in zip(epochs, names, strict=True):
        settings = ["-S", f"train.ann.max_epochs={epoch_count}"]
        settings += ["-S", "compute.threads=auto"]  # the project's default (tests pin one)
        run(["dvc", "exp", "run", "--queue", "--name", name, *settings], folder, environment)
    run(["dvc", "queue", "start", "-j", "2"], folder, environment)
    deadline = time.monotonic() + QUEUE_TIMEOUT_SECONDS
    while not queue_finished(folder, environment):
        assert time.monotonic() < deadline, run(["dvc", "queue", "status"], folder, environment)
        time.sleep(2)
    return names


def queue_finished(folder: Path, environment: dict[str, str]) -> bool:
    status = run(["dvc", "queue", "status"], folder, environment)
    return not any(word in status for word in ("Queued", "Running"))


def runs_of_experiment(environment: dict[str, str], name: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(environment["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("digit-recognizer")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], f"tags.dvc_experiment = '{name}'")


def train_run(folder: Path, environment: dict[str, str], name: str) -> mlflow.entities.RunInfo:
    """The MLflow run of an experiment's train stage (the experiment's log if there is none)."""
    found = [
        r.info for r in runs_of_experiment(environment, name) if r.data.tags["stage"] == "train"
    ]
    assert len(found) == 1, run(["dvc", "queue", "logs", name], folder, environment)
    return found[0]


def trained_side_by_side(folder: Path, environment: dict[str, str], names: tuple[str, str]) -> bool:
    """Whether the two experiments' train stages overlapped in time."""
    first, second = (train_run(folder, environment, name) for name in names)
    return first.start_time < second.end_time and second.start_time < first.end_time


def stage_output(log: str, stage: str) -> str:
    """What one stage printed in a `dvc queue logs` text."""
    return log.split(f"Running stage '{stage}'", 1)[1].split("Running stage", 1)[0]


@pytest.mark.slow
def test_queued_training_experiments_reuse_the_searches_and_share_the_cpus(
    reproduced: ReproducedProject, tmp_path: Path
) -> None:
    # given two queued experiments that change only the MLP's training (tiny params train 2)
    # when two queue workers run them side by side; DVC sometimes leaves the second worker
    # idle or unstarted and runs both in one (treeverse/dvc#10562), so that is tried again
    first, environment = reproduced.folder, reproduced.environment
    attempts = [run_queued_side_by_side(first, environment, (3, 4))]
    while not trained_side_by_side(first, environment, attempts[-1]) and len(attempts) < 3:
        more_epochs = (3 + 2 * len(attempts), 4 + 2 * len(attempts))  # new experiments
        attempts.append(run_queued_side_by_side(first, environment, more_epochs))
    names = attempts[-1]
    assert trained_side_by_side(first, environment, names), f"DVC never ran two workers: {attempts}"

    # then both succeeded without running either search: only the MLP's stages and what reads
    # them ran, and their runs carry the experiment's name in the project's MLflow store
    for name in names:
        logs = run(["dvc", "queue", "logs", name], first, environment)
        assert ran_stages(logs) == {"train@ann", "evaluate@ann", "report", "promote"}, logs
        assert {r.data.tags["stage"] for r in runs_of_experiment(environment, name)} == {
            "train",
            "evaluate",
        }
        # and the training took a share of the CPUs while the other worker ran
        if len(os.sched_getaffinity(0)) > 1:
            training = stage_output(logs, "train@ann")
            assert "shared by 2 queue workers" in training, training

    # and the experiments travel to a teammate through the git remote
    run(["dvc", "exp", "push", "origin", *names], first, environment)
    second = tmp_path / "second"
    teammate = clone(origin_of(first, environment), second, environment)
    run(["dvc", "exp", "pull", "origin", *names], second, teammate)
    listed = run(["dvc", "exp", "list", "--name-only"], second, teammate).split()
    assert set(names) <= set(listed), listed
