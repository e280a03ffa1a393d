"""Helpers for end-to-end tests: a git + DVC copy of the repository with tiny data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from digit_recognizer.data.kaggle_csv import write_digits_csv
from tests.helpers.project import REPOSITORY, synthetic_digits, tiny_params, write_tiny_data
from tests.helpers.warm_digits import warm_bin

STAGES = (
    "prepare",
    "feedback",
    "robustness",
    "baselines",
    "tune@ann",
    "tune@cnn",
    "train@ann",
    "train@cnn",
    "evaluate@ann",
    "evaluate@cnn",
    "report",
    "promote",
)


def run(command: list[str], cwd: Path, environment: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


def ran_stages(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


def git_copy_with_tiny_data(folder: Path, *, labelled_test: bool) -> dict[str, str]:
    """A git + DVC copy of the repository with tiny data and budgets; its environment."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        if (REPOSITORY / name).is_file() and name not in ("data.dvc", "dvc.lock"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / name, folder / name)
    write_tiny_data(folder / "data")
    if not labelled_test:  # Kaggle's own layout: test.csv has no label column
        write_digits_csv(folder / "data/test.csv", synthetic_digits(5, 1, with_labels=False))
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    environment = {
        **os.environ,
        # beside the project, not in it: a git checkout must never swap the database file
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder.parent / folder.name}-mlflow.db",
        # dvc comes from this environment; the digits its stages run, from the warm server
        "PATH": os.pathsep.join(
            (str(warm_bin()), str(Path(sys.executable).parent), os.environ["PATH"])
        ),
    }
    for command in (
        ["digits", "feedback", "export"],  # no corrections yet: what feedback.dvc records
        ["git", "init", "-q"],
        # an identity for the commits DVC experiments make, on machines without a global one
        ["git", "config", "user.email", "tests@example.com"],
        ["git", "config", "user.name", "tests"],
        ["dvc", "add", "-q", "data"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        run(command, folder, environment)
    return environment


def commit_all(folder: Path, environment: dict[str, str], message: str) -> None:
    run(["git", "add", "-A"], folder, environment)
    run(["git", "commit", "-qm", message], folder, environment)
