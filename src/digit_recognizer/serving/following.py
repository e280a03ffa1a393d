"""The model a server worker answers with: a registered version, pinned or following an alias.

Serving ``@champion``, every worker polls the alias; when it moves (promote, rollback) the new
version is loaded beside the old one and then swapped in with one assignment, so no request is
dropped and each is answered by exactly one version. Each version served is kept on local disk
(``serve.local_copies_dir``) with the alias's last version beside it, so a worker that starts
while the tracking store is down (one restarted after a crash) answers with that version.
Configuration comes from the environment that ``serving.commands.serve_command`` sets, so every
uvicorn worker builds the same model.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digit_recognizer import tracking
from digit_recognizer.files import atomic_path
from digit_recognizer.serving.bodies import Deadline
from digit_recognizer.serving.recording import LogSettings

ENVIRONMENT_PREFIX = "DIGITS_SERVE_"
# Rows predicted between two looks at a request's deadline: ~0.3 s of a CNN on 2 cores.
BATCH_ROWS = 512

# The version that answered the current request; the handler runs predict in a worker thread,
# so the middleware shares a mutable cell with it rather than a value.
answered_by: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("answered_by")


@dataclass(frozen=True)
class ServedModel:
    """What a server serves: a registered model, pinned to a version or following an alias."""

    tracking_uri: str
    name: str
    alias: str | None  # None: pinned to ``pinned_version``
    pinned_version: str | None
    poll_seconds: float
    local_copies: str  # a folder
    max_body_bytes: int
    max_picture_pixels: int
    max_request_pixels: int
    max_parts: int
    max_rows: int
    max_concurrent_requests: int
    request_timeout_seconds: float
    allowed_origins: str  # comma-separated (an environment variable's value)
    log: LogSettings

    def environment(self) -> dict[str, str]:
        fields = {key: value for key, value in self.__dict__.items() if key != "log"}
        fields.update({f"log_{key}": value for key, value in self.log.__dict__.items()})
        return {
            f"{ENVIRONMENT_PREFIX}{key.upper()}": "" if value is None else str(value)
            for key, value in fields.items()
        }

    @classmethod
    def from_environment(cls) -> ServedModel:
        def value(key: str) -> str:
            return os.environ[f"{ENVIRONMENT_PREFIX}{key.upper()}"]

        return cls(
            tracking_uri=value("tracking_uri"),
            name=value("name"),
            alias=value("alias") or None,
            pinned_version=value("pinned_version") or None,
            poll_seconds=float(value("poll_seconds")),
            local_copies=value("local_copies"),
            max_body_bytes=int(value("max_body_bytes")),
            max_picture_pixels=int(value("max_picture_pixels")),
            max_request_pixels=int(value("max_request_pixels")),
            max_parts=int(value("max_parts")),
            max_rows=int(value("max_rows")),
            max_concurrent_requests=int(value("max_concurrent_requests")),
            request_timeout_seconds=float(value("request_timeout_seconds")),
            allowed_origins=value("allowed_origins"),
            log=LogSettings(
                url=value("log_url"),
                store_pixels=value("log_store_pixels") == "True",
                queue_size=int(value("log_queue_size")),
                batch_size=int(value("log_batch_size")),
                flush_seconds=float(value("log_flush_seconds")),
            ),
        )


class FollowingModel:
    """A pyfunc stand-in for MLflow's scoring app whose model can be swapped under it."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self._store = tracking.Store(served.tracking_uri, "", None)
        self._registry = tracking.Registry(self._store, served.name)
        version = self._starting_version()
        # one attribute for the pair: a request never sees one version's number on another's model
        self._current: tuple[str, Any] = (version, self._load(version))
        self._remember(version)
        self.metadata = self._current[1].metadata

    @property
    def version(self) -> str:
        return self._current[0]

    def _wanted_version(self) -> str:
        if self.served.alias is None:
            assert self.served.pinned_version is not None
            return self.served.pinned_version
        version = self._registry.alias(self.served.alias)
        if version is None:
            raise RuntimeError(f"registered model '{self.served.name}' has no @{self.served.alias}")
        return version

    def _starting_version(self) -> str:
        # A worker restarted while its server is down serves its copy at once, rather than
        # after MLflow's retries (about 30 s); without a copy, the retries may outlast a restart.
        if self._last_served_file().is_file() and tracking.server_down(self._store.uri):
            return self._last_served(ConnectionError(f"{self._store.uri}/health does not answer"))
        try:
            return self._wanted_version()
        except RuntimeError:  # no such alias: nothing to fall back on
            raise
        except Exception as error:  # the store is down
            return self._last_served(error)

    def _last_served_file(self) -> Path:
        return Path(self.served.local_copies) / self.served.name / f"@{self.served.alias}"

    def _remember(self, version: str) -> None:
        if self.served.alias is not None:
            with atomic_path(self._last_served_file()) as temporary:
                temporary.write_text(version)

    def _last_served(self, error: Exception) -> str:
        """The alias's version last served here, when the store cannot say which it is now."""
        last = self._last_served_file()
        if self.served.alias is None or not last.is_file():
            raise error
        version = last.read_text().strip()
        print(
            f"serve: the tracking store does not answer ({str(error).splitlines()[0]}); "
            f"serving version {version}, last served, from its local copy",
            flush=True,
        )
        return version

    def _load(self, version: str) -> Any:
        copy = tracking.local_copy(
            self.served.name, version, self._store, Path(self.served.local_copies)
        )
        return tracking.load_pyfunc(str(copy), self._store)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.predict_with_version(data, params)[1]

    def predict_with_version(
        self, data: Any, params: dict[str, Any] | None = None, deadline: Deadline | None = None
    ) -> tuple[str, Any]:
        """The answer and the version that gave it (also named in the response's header);
        with a deadline, rows are predicted in batches and the rest dropped once it passes
        (PastDeadline)."""
        import pandas as pd

        version, model = self._current
        cell = answered_by.get(None)
        if cell is not None:
            cell["version"] = version
        if deadline is None:
            return version, model.predict(data, params=params)
        frames = []
        for start in range(0, len(data), BATCH_ROWS):
            deadline.check()
            frames.append(model.predict(data[start : start + BATCH_ROWS], params=params))
        return version, pd.concat(frames, ignore_index=True)

    def follow(self, swapped: Callable[[str], None]) -> None:
        """Poll the alias; load a new version fully before swapping it in, then say so."""
        while True:  # a daemon thread: it ends with the worker process
            time.sleep(self.served.poll_seconds)
            try:
                wanted = self._wanted_version()
                if wanted != self.version:
                    self._current = (wanted, self._load(wanted))
                    self._remember(wanted)
                    swapped(wanted)
                    print(f"serve: now serving version {wanted}", flush=True)
            except Exception as error:  # a registry hiccup must not stop serving
                print(f"serve: keeping version {self.version}: {error}", flush=True)
