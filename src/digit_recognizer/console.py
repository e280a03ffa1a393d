"""A quiet console: the stages' own progress and results, errors, and nothing a user cannot act
on. Called once by the CLI before a command runs; nothing happens at import time."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

# Python warnings from libraries that describe their internals, not the user's work.
_IGNORED_WARNINGS = (
    "Skipping variable loading for optimizer",
    "Hint: Inferred schema contains integer",
    ".*input example was not provided",
    "starlette.middleware.wsgi is deprecated",  # MLflow's server app, imported by add-user
)


def quiet_libraries() -> None:
    """Library chatter off; real warnings and errors still reach the user."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ info and warnings
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # With a tracking server MLflow prints two links per run; each stage names its run already.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow's INFO lines ("Creating initial MLflow database tables") are about its internals.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for message in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with the C++ start-up lines (oneDNN, CPU features, absl's "before
    InitializeLog") sent nowhere: they are printed before TF_CPP_MIN_LOG_LEVEL applies. An
    import error still raises, after stderr is back."""
    with _stderr_to_devnull():
        import tensorflow  # noqa: F401
