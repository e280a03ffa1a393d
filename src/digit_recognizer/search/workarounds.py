"""Work-arounds for Keras Tuner internals, each checked against the version it was written
for: a newer Keras Tuner fails here in one line instead of misbehaving quietly.

- A kill during a state write left an empty ``oracle.json`` no resume could read (the family
  of upstream keras-team/keras-tuner#987: a killed search leaves files a restart cannot load):
  its JSON writes go through this project's write-then-rename.
- A kill between a new trial's file and its record as ongoing left the trial RUNNING, neither
  retried nor replaced by the reloaded oracle (upstream keras-team/keras-tuner#439: a trial
  killed mid-run is not resumed): such trials are queued again through the oracle's private
  retry queue, Keras Tuner having no public way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from digit_recognizer.errors import UserError
from digit_recognizer.files import write_text

WRITTEN_FOR = "1.4."  # keras-tuner's release line whose internals these touch


def _check_version() -> None:
    import keras_tuner

    if not keras_tuner.__version__.startswith(WRITTEN_FOR):
        raise UserError(
            f"keras-tuner {keras_tuner.__version__}: search/workarounds.py patches the internals "
            f"of {WRITTEN_FOR}x; check them against this version, or install the pinned one "
            "(constraints.txt)"
        )


def save_tuner_state_atomically() -> None:
    """Route Keras Tuner's oracle and trial JSON writes through write-then-rename, so a killed
    search leaves the old state or the new one."""
    from keras_tuner.src import utils as tuner_utils

    _check_version()

    def save_json(path: str, state: Any) -> str:
        text = json.dumps(state)
        write_text(Path(path), text)
        return text

    tuner_utils.save_json = save_json


def requeue_orphaned_trials(oracle: Any) -> list[str]:
    """Queue again the trials a kill left RUNNING; return their ids."""
    _check_version()
    queued = set(oracle._retry_queue)
    orphaned = [
        trial_id
        for trial_id, trial in sorted(oracle.trials.items())
        if str(trial.status) == "RUNNING" and trial_id not in queued
    ]
    oracle._retry_queue.extend(orphaned)
    return orphaned


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


def first_failure(tuner: Any) -> str:
    """The first failed trial's error; a worker's oracle is the chief's proxy, which lists no
    trials: its own failure then."""
    for trial in getattr(tuner.oracle, "trials", {}).values():
        if trial.message:
            return exception_summary(str(trial.message))
    return "no trial completed"
