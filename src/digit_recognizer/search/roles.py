"""Keras Tuner's distributed mode: one chief process holds the oracle and serves it over gRPC
(no authentication), workers ask it for trials and share the search directory."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from digit_recognizer import tracking
from digit_recognizer.errors import UserError

TUNER_ID_VARIABLE = "KERASTUNER_TUNER_ID"
ORACLE_IP_VARIABLE = "KERASTUNER_ORACLE_IP"
ORACLE_PORT_VARIABLE = "KERASTUNER_ORACLE_PORT"
LOCAL_ORACLE_IP = "127.0.0.1"  # where the chief listens unless KERASTUNER_ORACLE_IP says
SINGLE_TUNER_ID = "tuner0"  # Keras Tuner's id for a search in one process
CHIEF_WAIT_SECONDS = 300  # how long a worker waits for the chief's search run


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
