"""What the tune and train stages leave for later stages: the chosen hyperparameters and the
trained-model record (its MLflow run, model URI and registered version)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from digit_recognizer.config import Family, PathsConfig
from digit_recognizer.errors import UserError
from digit_recognizer.models.architectures import hyperparameters_from


@dataclass(frozen=True)
class TrainedModel:
    """What later stages need to find a family's model, in MLflow and on disk."""

    family: Family
    run_id: str
    model_uri: str
    registered_name: str
    version: str
    epochs_all_members: int  # summed over an ensemble's networks; one network's epochs else
    train_seconds: float


def load_trained(paths: PathsConfig, family: Family) -> TrainedModel:
    path = paths.trained_record(family)
    try:
        return TrainedModel(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise UserError(
            f"{path}: not found; run the train stage first (dvc repro train@{family})"
        ) from None
    except (json.JSONDecodeError, TypeError) as error:
        raise UserError(
            f"{path}: not a trained-model record ({error}); run the train stage again "
            f"(dvc repro train@{family})"
        ) from None


def load_best_hyperparameters(paths: PathsConfig, family: Family) -> dict[str, Any]:
    path = paths.best_hyperparameters(family)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{path}: not found; run the tune stage first (dvc repro tune@{family})"
        ) from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: invalid JSON at line {error.lineno}") from None
    try:
        hyperparameters_from(family, values)
    except TypeError as error:
        raise UserError(f"{path}: not {family} hyperparameters ({error})") from None
    return dict(values)
