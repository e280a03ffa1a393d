"""How many CPU threads a stage may use: all of them alone, a share under parallel DVC queue
workers (``dvc queue start -j N``), where N stages each taking every core ran slower in total
than one after another (measured: docs/team.md, "Queued experiments").

The budget is applied through environment variables read when TensorFlow and the BLAS/OpenMP
libraries start, so it must be chosen before they are imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Read by TensorFlow when it creates its thread pools, and by OpenBLAS/MKL/OpenMP on load.
THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)
QUEUE_WORKER_COMMAND = ("exp", "queue-worker")  # how `dvc queue start` runs each worker
PROC = Path("/proc")


@dataclass(frozen=True)
class ThreadBudget:
    threads: int
    reason: str  # printed and logged beside the number


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def running_queue_workers(proc: Path = PROC) -> int:
    """DVC queue workers alive on this machine, from every process's command line."""
    workers = 0
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        words = [argument.decode(errors="replace") for argument in arguments]
        workers += any(
            tuple(words[index : index + 2]) == QUEUE_WORKER_COMMAND for index in range(len(words))
        )
    return workers


def choose_threads(setting: int | str, cpus: int, queue_workers: int) -> ThreadBudget:
    """``setting`` is compute.threads: a number, or ``auto`` (the CPUs shared by the workers)."""
    if setting != "auto":
        return ThreadBudget(int(setting), "compute.threads")
    if queue_workers > 1:
        share = max(1, cpus // queue_workers)
        return ThreadBudget(share, f"auto: {cpus} CPUs shared by {queue_workers} queue workers")
    return ThreadBudget(cpus, f"auto: all {cpus} CPUs")


def use_threads(budget: ThreadBudget) -> None:
    """Apply ``budget`` to TensorFlow and the numeric libraries loaded after this call."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(budget.threads)


def threads_in_use() -> int:
    """The budget this process applied (all CPUs when none was)."""
    return int(os.environ.get(THREAD_VARIABLES[0], available_cpus()))
