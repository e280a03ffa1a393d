"""params.yaml parsed once into frozen, typed objects; unknown or mistyped keys are refused.

Every stage receives the piece of configuration it needs; nothing reads params.yaml again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from digit_recognizer.errors import UserError

Family = Literal["ann", "cnn"]
FAMILIES: tuple[Family, ...] = ("ann", "cnn")


class Section(BaseModel):
    """Base for every section: no unknown keys, no silent type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PathsConfig(Section):
    """Every file location the stages read or write; dvc.yaml interpolates the same keys."""

    data_dir: str = "data"
    prepared_dir: str = "prepared"
    reports_dir: str = "reports"
    metrics_dir: str = "metrics"

    @property
    def train_csv(self) -> Path:
        return Path(self.data_dir) / "train.csv"

    @property
    def test_csv(self) -> Path:
        return Path(self.data_dir) / "test.csv"


class MlflowConfig(Section):
    experiment_name: str = Field(default="digit-recognizer", min_length=1)
    registered_model_name: str = Field(default="digit-recognizer", min_length=1)


class PrepareConfig(Section):
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    eda_samples_per_class: int = Field(default=10, ge=1, le=30)


class Params(Section):
    seed: int = 42
    paths: PathsConfig = PathsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    prepare: PrepareConfig = PrepareConfig()


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; the error names the first offending key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
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
