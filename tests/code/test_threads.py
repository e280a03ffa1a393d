"""The per-stage thread budget: every CPU alone, a share under parallel DVC queue workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from digit_recognizer.runtime.threads import (
    THREAD_VARIABLES,
    ThreadBudget,
    choose_threads,
    running_queue_workers,
    threads_in_use,
    use_threads,
)


def fake_process(proc: Path, pid: int, *arguments: str) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in arguments) + b"\0")


def test_queue_workers_are_counted_from_their_command_lines(tmp_path: Path) -> None:
    # given two DVC queue workers, a DVC command that is not one, and an unrelated process
    fake_process(tmp_path, 11, "/venv/bin/python", "/venv/bin/dvc", "exp", "queue-worker", "n-1")
    fake_process(tmp_path, 12, "/venv/bin/python", "/venv/bin/dvc", "exp", "queue-worker", "n-2")
    fake_process(tmp_path, 13, "/venv/bin/python", "/venv/bin/dvc", "exp", "run", "--queue")
    fake_process(tmp_path, 14, "vim", "queue-worker")
    # when they are counted, then only the workers count
    assert running_queue_workers(tmp_path) == 2


def test_auto_shares_the_cpus_between_queue_workers() -> None:
    assert choose_threads("auto", cpus=2, queue_workers=0).threads == 2
    assert choose_threads("auto", cpus=2, queue_workers=1).threads == 2
    assert choose_threads("auto", cpus=8, queue_workers=2).threads == 4
    shared = choose_threads("auto", cpus=2, queue_workers=3)
    assert shared.threads == 1 and "3 queue workers" in shared.reason
    assert choose_threads(3, cpus=2, queue_workers=2) == ThreadBudget(3, "compute.threads")


def test_the_budget_reaches_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a budget of one thread applied before TensorFlow starts
    for variable in THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    use_threads(ThreadBudget(1, "test"))
    assert threads_in_use() == 1
    # when TensorFlow starts in a process with this environment, then its pools use one thread
    probe = (
        "import tensorflow as tf; tf.constant(1.0) + 1.0; "
        "import os; print(len(os.listdir('/proc/self/task')))"
    )
    counts = []
    for threads in ("1", "4"):
        environment = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, threads)}
        result = subprocess.run(
            [sys.executable, "-c", probe], env=environment, capture_output=True, text=True
        )
        counts.append(int(result.stdout.split()[-1]))
    assert counts[0] < counts[1], f"threads with budget 1 and 4: {counts}"
