"""params.yaml parsed once into frozen, typed objects; unknown or mistyped keys are refused.

Every stage receives the piece of configuration it needs; nothing reads params.yaml again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from digit_recognizer.config.monitoring import MonitoringConfig
from digit_recognizer.config.paths import PathsConfig
from digit_recognizer.config.pipeline import (
    BaselinesConfig,
    ComputeConfig,
    EvaluateConfig,
    FeedbackConfig,
    MlflowConfig,
    PrepareConfig,
    PromoteConfig,
    RobustnessConfig,
    SearchBudget,
    TrainConfig,
    TrainFamilyConfig,
    TuneConfig,
)
from digit_recognizer.config.section import FAMILIES, Family, Section
from digit_recognizer.config.serving import PicturesConfig, ServeConfig, TeamServerConfig
from digit_recognizer.errors import UserError

__all__ = [
    "FAMILIES",
    "BaselinesConfig",
    "Family",
    "MlflowConfig",
    "MonitoringConfig",
    "Params",
    "PathsConfig",
    "PromoteConfig",
    "SearchBudget",
    "TeamServerConfig",
    "TrainFamilyConfig",
    "load_params",
    "parse_params",
]


class Params(Section):
    seed: int = 42
    paths: PathsConfig = PathsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    prepare: PrepareConfig = PrepareConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    compute: ComputeConfig = ComputeConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    tune: TuneConfig = TuneConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    serve: ServeConfig = ServeConfig()
    pictures: PicturesConfig = PicturesConfig()
    server: TeamServerConfig = TeamServerConfig()
    monitoring: MonitoringConfig = MonitoringConfig()


# Keys renamed since they were released: a params.yaml that still has one is told the new name.
RENAMED_KEYS = {"promote.min_test_accuracy": "promote.min_evaluation_accuracy"}


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; the error names the first offending key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden" and key in RENAMED_KEYS:
            raise UserError(f"{source}: key '{key}' is now '{RENAMED_KEYS[key]}'") from None
        if first["type"] == "extra_forbidden":
            raise UserError(f"{source}: unknown key '{key}'") from None
        raise UserError(
            f"{source}: key '{key}': {first['msg']} (got {first.get('input')!r})"
        ) from None


def load_params(path: Path) -> Params:
    """Read and validate params.yaml."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: parameters file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read parameters file ({error})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: invalid YAML{where}") from None
    return parse_params(raw if raw is not None else {}, str(path))
