"""The team server's rule for read users, over MLflow's own route table (read at test time):
every route that can write is refused to a read user, the read-only searches are named one by
one, and without a readable list of read users nothing writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digit_recognizer.team.access import READING_POSTS, SAFE_METHODS, refusal


def mlflow_routes() -> set[tuple[str, str]]:
    """(method, path) of every route MLflow's tracking server serves, Flask's and FastAPI's."""
    from mlflow.server import app
    from mlflow.server.handlers import get_endpoints

    routes = {(method, path) for path, _, methods in get_endpoints() for method in methods}
    routes |= {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    return routes


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "read_users.json"
    path.write_text(json.dumps(["rui"]))
    return path


def test_every_route_that_writes_is_refused_to_a_read_user(users: Path) -> None:
    routes = mlflow_routes()
    writes = {(method, path) for method, path in routes if method not in SAFE_METHODS}
    assert len(writes) > 150  # MLflow's table was read, not an empty list
    let_through = {
        (method, path) for method, path in writes if refusal(method, path, "rui", users) is None
    }
    # the only writes a read user makes are the read-only searches, each named
    assert {path for _, path in let_through} <= READING_POSTS
    assert {path for _, path in let_through} == READING_POSTS & {path for _, path in writes}
    # an edit user is not refused, and reads are never refused
    assert all(refusal(method, path, "ana", users) is None for method, path in writes)
    assert all(
        refusal(method, path, "rui", users) is None
        for method, path in routes
        if method in SAFE_METHODS
    )


def test_a_path_that_only_ends_like_a_search_is_a_write() -> None:
    for path in ["/api/2.0/mlflow/runs/delete/search", "/api/2.0/mlflow/experiments/x/search"]:
        assert path not in READING_POSTS


@pytest.mark.parametrize("content", [None, "not json", '{"rui": 1}', "[1, 2]"])
def test_without_a_readable_list_of_read_users_nothing_writes(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "read_users.json"
    if content is not None:
        path.write_text(content)
    reason = refusal("POST", "/api/2.0/mlflow/runs/create", "ana", path)
    assert reason is not None and "unreadable" in reason and "no writes" in reason
    assert refusal("GET", "/api/2.0/mlflow/runs/get", "ana", path) is None
