"""What every section of params.yaml is: strict, frozen, closed to unknown keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Family = Literal["ann", "cnn"]
FAMILIES: tuple[Family, ...] = ("ann", "cnn")


class Section(BaseModel):
    """Base for every section: no unknown keys, no silent type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
