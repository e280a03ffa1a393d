"""How long the quick loop and the whole suite take from a fresh clone: `make check` and
`make test`, each run several times in one clone of this repository's HEAD.

    python -m benchmarks.test_times                      # make check, 3 runs
    python -m benchmarks.test_times --target test        # make test (what CI runs), 3 runs

The clone's `.venv` is built first (`make venv`) and not timed: that is the set-up both commands
share, and pip's time says nothing about the suite. The first run also pays for cold caches
(ruff, mypy, compiled bytecode); the report keeps every run and the median. Run it on a quiet
machine: nothing else should share the CPUs. Writes reports/benchmarks/test_times.json (the
other target's last runs are kept, with the CPU they ran on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_report
from digit_recognizer.runtime.cpu import cpu_model

TARGETS = ("check", "test")


def timed_runs(clone: Path, target: str, runs: int) -> list[float]:
    """Wall seconds of each `make TARGET` in the clone; a failing run stops the benchmark."""
    seconds = []
    for run in range(1, runs + 1):
        started = time.perf_counter()
        result = subprocess.run(["make", target], cwd=clone, capture_output=True, text=True)
        seconds.append(round(time.perf_counter() - started, 1))
        if result.returncode != 0:
            raise SystemExit(f"make {target} failed on run {run}:\n{result.stdout[-3000:]}")
        print(f"make {target}, run {run}: {seconds[-1]} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS, default="check")
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    root = Path.cwd()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="digits-test-times-") as name:
        clone = Path(name) / "clone"
        subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
        subprocess.run(["make", "venv"], cwd=clone, check=True, capture_output=True)
        seconds = timed_runs(clone, arguments.target, arguments.runs)
    output = root / "reports" / "benchmarks" / "test_times.json"
    targets = json.loads(output.read_text())["targets"] if output.exists() else {}
    targets[arguments.target] = {
        "cpu": cpu_model(),
        "commit": commit,
        "seconds": seconds,
        "median_seconds": statistics.median(seconds),
    }
    print(f"written {write_report(root, 'test_times', {'targets': targets})}")


if __name__ == "__main__":
    main()
