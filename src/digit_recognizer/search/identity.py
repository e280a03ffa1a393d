"""What makes a search the same search: its fingerprint (space, budget, tuner, seed, data,
precision and the search's own code), the saved state kept under it, and how many trials
the tuner will run."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

from digit_recognizer.config import Family, Params, SearchBudget
from digit_recognizer.runtime.precision import PrecisionChoice


def code_digest() -> str:
    """The search's own code: a changed builder or search loop must not resume old trials
    (what a trial runs is this package's and the models' code; the stage only orchestrates)."""
    from digit_recognizer.models import architectures, hypermodel, input_pipeline, schedule
    from digit_recognizer.runtime import precision

    searches = sorted(Path(__file__).parent.glob("*.py"))
    modules = (architectures, input_pipeline, hypermodel, precision, schedule)
    sources = (*searches, *(Path(str(module.__file__)) for module in modules))
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:16]


def search_fingerprint(
    params: Params, family: Family, data_digest: str, precision: PrecisionChoice
) -> str:
    family_config = params.tune.family(family)
    identity = {
        "family": family,
        "tuner": params.tune.tuner,
        "seed": params.seed,
        "precision": precision.policy,  # trials in bfloat16 and float32 do not mix
        "config": family_config.model_dump(),
        "data": data_digest,
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def remove_other_searches(directory: Path, fingerprint: str) -> None:
    """Drop saved searches of other spaces, budgets or data (called once the new one builds)."""
    for stale in directory.glob("*") if directory.exists() else []:
        if stale.name != fingerprint:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def planned_trials(tuner_name: str, budget: SearchBudget) -> int:
    """How many trials the search will run (Hyperband: its brackets' successive halvings)."""
    if tuner_name != "hyperband":
        return budget.max_trials
    factor, max_epochs = budget.hyperband_factor, budget.max_epochs
    brackets = 0
    epochs: float = max_epochs
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    return sum(
        math.ceil(end_size / (bracket + 1) * factor ** (bracket - round_number))
        for bracket in range(brackets)
        for round_number in range(bracket + 1)
    )
