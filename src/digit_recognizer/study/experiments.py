"""The DVC side of a study: one queued experiment per seed, run by DVC's queue workers, and
the files each experiment committed, read back from its git ref."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from digit_recognizer.errors import UserError
from digit_recognizer.runtime.programs import program, program_environment


def _dvc(arguments: Sequence[str], root: Path) -> str:
    result = subprocess.run(
        [program("dvc"), *arguments],
        cwd=root,
        env=program_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise UserError(f"dvc {' '.join(arguments)}: {reason[-1]}")
    return result.stdout


def require_idle_queue(root: Path) -> None:
    """A study waits for every queued experiment, so it starts only on an empty queue."""
    status = _dvc(["queue", "status"], root)
    if any(word in status for word in ("Queued", "Running")):
        raise UserError(
            "the DVC experiment queue already holds experiments; run or remove them first "
            "(dvc queue status, dvc queue remove --queued)"
        )


def queue_experiment(root: Path, name: str, settings: Sequence[str]) -> None:
    """Queue one experiment of the whole pipeline with ``settings`` (``key=value``) applied."""
    options = [option for setting in settings for option in ("--set-param", setting)]
    _dvc(["exp", "run", "--queue", "--name", name, *options], root)


def run_queued(root: Path, jobs: int) -> None:
    """Run the queue with ``jobs`` workers and wait for it; DVC reuses every stage whose
    inputs it has run before (its run cache), so an unchanged seed costs a checkout."""
    # the queue's workers run the stages' `digits` commands: this environment's, on PATH
    command = [program("dvc"), "exp", "run", "--run-all", "--jobs", str(jobs)]
    subprocess.run(command, cwd=root, env=program_environment(), check=False)


def experiment_ref(root: Path, name: str) -> str | None:
    """The git ref DVC stored the finished experiment ``name`` under; None when it failed."""
    listed = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps/"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = [ref for ref in listed if ref.rsplit("/", 1)[-1] == name]
    return found[-1] if found else None


def committed_file(root: Path, ref: str, path: Path) -> str:
    """A file as the experiment committed it (path relative to the project root)."""
    result = subprocess.run(
        ["git", "show", f"{ref}:./{path.as_posix()}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise UserError(f"{ref}: has no {path}; did its pipeline write it?")
    return result.stdout
