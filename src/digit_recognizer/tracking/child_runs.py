"""Nested runs under one parent (a search's trials), resumable without duplicates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digit_recognizer.tracking.runs import process_tags
from digit_recognizer.tracking.store import Store, activate


class ChildRuns:
    """Nested runs under one parent, one per unit of work (a tuner trial), keyed by an id.

    A key that already has a finished run is never logged twice; an unfinished one (its process
    was killed) is deleted and started again, so re-running resumes without duplicates.
    """

    def __init__(self, store: Store, parent_run_id: str, key_tag: str) -> None:
        import mlflow

        self._client = mlflow.MlflowClient(store.uri)
        self._experiment_id = activate(store)
        self._parent_run_id = parent_run_id
        self._key_tag = key_tag
        self._open: dict[str, str] = {}
        self.finished_count = 0  # children this object ended FINISHED

    def existing(self) -> dict[str, tuple[str, str]]:
        """key -> (run id, status) for the parent's children."""
        runs = self._client.search_runs(
            [self._experiment_id],
            f"tags.mlflow.parentRunId = '{self._parent_run_id}'",
            max_results=5000,
        )
        return {
            run.data.tags[self._key_tag]: (run.info.run_id, run.info.status)
            for run in runs
            if self._key_tag in run.data.tags
        }

    def start(
        self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str | None:
        """Start the child for ``key``; None when a finished one exists already."""
        from mlflow.entities import Param

        previous = self.existing().get(key)
        if previous and previous[1] == "FINISHED":
            return None
        if previous:
            self._client.delete_run(previous[0])
        run = self._client.create_run(
            self._experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self._parent_run_id,
                self._key_tag: key,
                **tags,
                **process_tags(),
            },
        )
        run_id = run.info.run_id
        try:
            self._client.log_batch(
                run_id, params=[Param(name, str(value)) for name, value in params.items()]
            )
        except BaseException:  # never leave a run RUNNING that nothing will finish
            self._client.set_terminated(run_id, "FAILED")
            raise
        self._open[key] = run_id
        return run_id

    def log_metrics(self, key: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        run_id = self._open.get(key)
        if run_id is not None:
            self._log_batch(run_id, metrics, step or 0)

    def _log_batch(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        timestamp = _now_ms()
        self._client.log_batch(
            run_id,
            metrics=[
                Metric(name, float(value), timestamp, step) for name, value in metrics.items()
            ],
        )

    def finish(
        self, key: str, status: str, metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> None:
        run_id = self._open.pop(key, None)
        if run_id is None:
            return
        self._log_batch(run_id, metrics, 0)
        for tag, value in tags.items():
            self._client.set_tag(run_id, tag, value)
        self._client.set_terminated(run_id, status)
        self.finished_count += status == "FINISHED"

    def abort_open(self, status: str) -> None:
        """End every child still open (the search was interrupted or crashed)."""
        for key in list(self._open):
            self.finish(key, status, {}, {"trial_status": status})


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def adopt_runs(store: Store, parent_run_id: str, tags: Mapping[str, str]) -> int:
    """Make the top-level runs carrying ``tags`` (a DVC experiment's stage runs) children of
    ``parent_run_id``, as the MLflow UI nests them; how many moved."""
    import mlflow

    client = mlflow.MlflowClient(store.uri)
    conditions = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    found = client.search_runs([activate(store)], conditions, max_results=5000)
    orphans = [run for run in found if "mlflow.parentRunId" not in run.data.tags]
    for run in orphans:
        client.set_tag(run.info.run_id, "mlflow.parentRunId", parent_run_id)
    return len(orphans)
