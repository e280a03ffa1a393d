"""The promotion lock on a real PostgreSQL: a mover whose session was ended under it refuses
to move the champion, in one line, and leaves nothing half written."""

from __future__ import annotations

from pathlib import Path

import mlflow
import psycopg
import pytest

from digit_recognizer import tracking
from digit_recognizer.errors import UserError
from digit_recognizer.locks import advisory_lock
from digit_recognizer.promotion.champion import MOVE_TAG, promote_to
from tests.helpers.postgres import postgres_url

__all__ = ["postgres_url"]  # the fixture, used by name


@pytest.mark.slow
def test_a_mover_whose_lock_session_was_ended_refuses_to_move_the_champion(
    postgres_url: str, tmp_path: Path
) -> None:
    # given a registered model with two versions, the first one champion under the lock
    store = tracking.Store(f"sqlite:///{tmp_path / 'mlflow.db'}", "lock", None)
    registry = tracking.Registry(store, "digit-recognizer")
    registry.create_if_missing()
    client = mlflow.MlflowClient(store.uri)
    first, second = (
        str(client.create_model_version("digit-recognizer", str(tmp_path)).version)
        for _ in range(2)
    )
    lock_url = postgres_url.replace("+psycopg", "")
    with advisory_lock(lock_url, "digit-recognizer/registry/test", 30) as held:
        registry.move_guard = held.confirm
        promote_to(registry, first, forced=False, reason="first")
        # when someone ends the lock's session before the next move
        with psycopg.connect(lock_url, autocommit=True) as connection:
            ended = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'digits %'"
            ).fetchall()
        assert ended == [(True,)]
        # then the move is refused in one line, and nothing of it was written
        with pytest.raises(UserError) as refused:
            promote_to(registry, second, forced=False, reason="second")
    message = str(refused.value)
    assert message.startswith("the promotion lock was lost before the champion moved"), message
    assert "\n" not in message
    model = client.get_registered_model("digit-recognizer")
    assert str(model.aliases[tracking.CHAMPION]) == first
    assert not model.tags.get(MOVE_TAG)
    assert [move["to"] for move in registry.recorded_moves()] == [first]
