"""Champion history at scale, on the store teams use (MLflow on a real PostgreSQL, whose tag
values are varchar(5000)): a thousand moves, every one read back in order."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from digit_recognizer import tracking
from digit_recognizer.promotion.champion import (
    HISTORY_TAG,
    MOVE_TAG,
    ROLLBACK_DEPTH,
    promote_to,
    roll_back,
)
from tests.helpers.postgres import postgres_url

__all__ = ["postgres_url"]  # the fixture, used by name


@pytest.mark.slow
def test_a_thousand_promotions_and_rollbacks_on_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    # given a registered model with a hundred versions in an MLflow store on PostgreSQL
    store = tracking.Store(postgres_url, "history", (tmp_path / "artifacts").as_uri())
    tracking.activate(store)
    registry = tracking.Registry(store, "digit-recognizer")
    registry.create_if_missing()
    client = mlflow.MlflowClient(store.uri)
    versions = [
        str(client.create_model_version("digit-recognizer", str(tmp_path)).version)
        for _ in range(100)
    ]
    # when 900 promotions among the two-digit versions and 100 rollbacks are made, in turn
    expected: list[tuple[str, str, str]] = []
    for step in range(900):
        champion = registry.alias(tracking.CHAMPION)
        version = versions[90 + step % 10]
        promote_to(registry, version, forced=False, reason=f"step {step}")
        expected.append(("promote", champion or "", version))
        if step % 9 == 8:
            moved = roll_back(registry)
            assert moved is not None
            expected.append(("rollback", *moved))

    # then every move is read back, in order, with what it moved from and to
    moves = registry.recorded_moves()
    assert [(move["move"], move["from"], move["to"]) for move in moves] == expected
    assert moves[0]["reason"] == "step 0" and moves[-1]["move"] == "rollback"
    # and the champion is the last move's, the history tag holds what rollback needs, and no
    # move is left pending
    model = client.get_registered_model("digit-recognizer")
    history = json.loads(model.tags[HISTORY_TAG])
    assert str(model.aliases[tracking.CHAMPION]) == history[-1] == expected[-1][2]
    assert ROLLBACK_DEPTH - 1 <= len(history) <= ROLLBACK_DEPTH and not model.tags[MOVE_TAG]
    # and a rollback still goes back one champion
    assert roll_back(registry) == (history[-1], history[-2])
