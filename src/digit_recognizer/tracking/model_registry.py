"""The MLflow model registry as the project uses it: registered versions, their aliases and
tags, and loading a version to predict."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digit_recognizer.errors import UserError
from digit_recognizer.tracking.runs import NOTE_TAG
from digit_recognizer.tracking.store import Store, activate

# The alias promotion moves and serving follows.
CHAMPION = "champion"
# The tags that make a run a record of a champion move, of which registered model.
MOVE_ID_TAG = "champion_move_id"
MOVE_MODEL_TAG = "champion_of"


def version_uri(name: str, version: str) -> str:
    """MLflow's URI of one registered version."""
    return f"models:/{name}/{version}"


def alias_uri(name: str, alias: str) -> str:
    """MLflow's URI of whichever version holds ``alias``."""
    return f"models:/{name}@{alias}"


@dataclass(frozen=True)
class VersionRecord:
    """A registered model version as the registry logic sees it."""

    version: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    run_id: str | None
    created_ms: int
    source: str


class Registry:
    """The registry calls the promotion logic needs (aliases, tags), for one registered model."""

    def __init__(self, store: Store, name: str) -> None:
        import mlflow

        self.name = name
        self.store = store
        self._client = mlflow.MlflowClient(store.uri)
        self._experiment: str | None = None
        # called right before an alias moves: the promotion lock's holder confirms it holds it
        self.move_guard: Callable[[], None] = lambda: None

    @property
    def _writes(self) -> Any:
        """MLflow's registry client, which MlflowClient's writes call after checking that the
        model is no GenAI prompt: that check reads the whole registered model (every version)
        before each write, nearly half of a champion move once a model has many versions. Ours
        is never a prompt. (MlflowClient makes it on first use and keeps it.)"""
        return self._client._get_registry_client()

    def create_if_missing(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(self.name)
        except MlflowException:
            self._client.create_registered_model(self.name)

    def versions(self) -> list[VersionRecord]:
        from mlflow.exceptions import MlflowException

        found = self._client.search_model_versions(f"name = '{self.name}'", max_results=10000)
        try:  # search results carry no aliases; the registered model does
            aliases = self._client.get_registered_model(self.name).aliases
        except MlflowException:
            aliases = {}
        records = []
        for version in found:
            record = self._record(version)
            held = tuple(
                sorted(alias for alias, number in aliases.items() if str(number) == record.version)
            )
            records.append(dataclasses.replace(record, aliases=held))
        return sorted(records, key=lambda item: int(item.version))

    def version(self, version: str) -> VersionRecord | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._record(self._client.get_model_version(self.name, version))
        except MlflowException:
            return None

    def alias(self, alias: str) -> str | None:
        """The version holding ``alias``; None when the model or the alias does not exist. A
        registry that does not answer is an error, never "no champion"."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self._client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def set_alias(self, alias: str, version: str) -> None:
        self.move_guard()
        self._writes.set_registered_model_alias(self.name, alias, version)

    def delete_alias(self, alias: str) -> None:
        self.move_guard()
        self._writes.delete_registered_model_alias(self.name, alias)

    def tag_version(
        self, version: str, tags: Mapping[str, str], description: str | None = None
    ) -> None:
        for key, value in tags.items():
            self._writes.set_model_version_tag(self.name, version, key, value)
        if description is not None:
            self._writes.update_model_version(self.name, version, description)

    def description(self, version: str) -> str:
        return str(self._client.get_model_version(self.name, version).description or "")

    def model_tag(self, key: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_registered_model(self.name).tags.get(key)
        except MlflowException:
            return None

    def set_model_tag(self, key: str, value: str) -> None:
        self._writes.set_registered_model_tag(self.name, key, value)

    def record_move(self, move_id: str, tags: Mapping[str, str], retried: bool) -> None:
        """One move of the champion as a finished run in the project's experiment (the full
        log, which no tag's size bounds); a ``retried`` move is recorded only if it was not."""
        if retried and self._move_runs(f"tags.{MOVE_ID_TAG} = '{move_id}'"):
            return
        run = self._client.create_run(
            self._experiment_id(),
            tags={
                **tags,
                MOVE_ID_TAG: move_id,
                "mlflow.runName": f"champion {tags.get('from', '') or '-'} -> {tags['to']}",
                NOTE_TAG: (
                    f"{tags.get('move', 'move')} of the champion from version "
                    f"{tags.get('from') or '(none)'} to {tags['to']}"
                    + (f": {tags['reason']}" if tags.get("reason") else "")
                ),
            },
        )
        self._client.set_terminated(run.info.run_id)

    def recorded_moves(self) -> list[dict[str, str]]:
        """Every recorded move of the champion, oldest first."""
        return [
            {key: value for key, value in run.data.tags.items() if not key.startswith("mlflow.")}
            for run in reversed(self._move_runs(""))
        ]

    def _experiment_id(self) -> str:
        if self._experiment is None:
            self._experiment = activate(self.store)
        return self._experiment

    def _move_runs(self, condition: str) -> list[Any]:
        query = f"tags.{MOVE_MODEL_TAG} = '{self.name}'" + (
            f" and {condition}" if condition else ""
        )
        runs, token = [], None
        while True:
            page = self._client.search_runs(
                [self._experiment_id()],
                query,
                order_by=["attributes.start_time DESC"],
                max_results=1000,
                page_token=token,
            )
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self._client.get_run(run_id).data.metrics)

    def _record(self, version: Any) -> VersionRecord:
        tags = dict(version.tags)
        return VersionRecord(
            version=str(version.version),
            aliases=tuple(version.aliases),
            tags=tags,
            run_id=tags.get("run_id") or version.run_id,
            created_ms=int(version.creation_timestamp),
            source=str(version.source),
        )


def load_pyfunc(model_uri: str, store: Store) -> Any:
    import mlflow

    mlflow.set_tracking_uri(store.uri)
    return mlflow.pyfunc.load_model(model_uri)


def local_copy(name: str, version: str, store: Store, copies: Path) -> Path:
    """A registered version's files in ``copies/<name>/<version>``, downloaded once (a version's
    files never change) and whole or not at all, so it loads again while the store is down."""
    import mlflow

    target = copies / name / version
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
    try:
        mlflow.set_tracking_uri(store.uri)
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=version_uri(name, version), dst_path=str(staging)
        )
        with contextlib.suppress(OSError):  # another worker's copy got there first: the same files
            os.rename(downloaded, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download_keras_model(name: str, version: str, store: Store, destination: Path) -> Path:
    """The saved Keras network inside a registered version (the pyfunc's ``keras_model``)."""
    import mlflow

    mlflow.set_tracking_uri(store.uri)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=version_uri(name, version), dst_path=str(destination)
        )
    except Exception as error:  # MLflow raises several types for a missing version or store
        raise UserError(
            f"cannot load {version_uri(name, version)}: {str(error).splitlines()[0]}"
        ) from None
    found = sorted(Path(local).glob("artifacts/*.keras"))
    if not found:
        raise UserError(f"{version_uri(name, version)} holds no Keras network (a baseline?)")
    return found[0]


def predict_labels(model_uri: str, store: Store, pixels: Any) -> Any:
    """Digits predicted by a logged model through its served interface (Kaggle rows in)."""
    from digit_recognizer.data.kaggle_csv import pixel_frame

    try:
        model = load_pyfunc(model_uri, store)
    except Exception as error:  # MLflow raises several types for a missing model or alias
        raise UserError(f"cannot load {model_uri}: {str(error).splitlines()[0]}") from None
    return model.predict(pixel_frame(pixels))["label"].to_numpy()
