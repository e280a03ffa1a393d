"""Runs inside the team's MLflow server, as its auth config's ``authorization_function``:
MLflow's basic auth, then one rule of ours.

MLflow lets any signed-in user create experiments and registered models whatever their grants,
so a user added with ``--permission read`` could still write. Here every write from a read
user (any method but GET, HEAD and OPTIONS, the read-only searches aside) is refused with
403. The read users are listed in a file ``digits server start`` creates and ``digits server
add-user`` keeps; it is read again on each write, so a new user counts at once, and when it is
missing or corrupt every write is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

READ_USERS_VARIABLE = "DIGITS_TEAM_READ_USERS"  # the list's path, set by digits server start
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# MLflow's POST routes that only read (searches the UI and clients make), exactly: any other
# POST, PATCH or DELETE from a read user is refused. The UI's GraphQL has queries only, which
# MLflow's auth checks resource by resource.
_READING_POST_ROUTES = (
    "2.0/mlflow/experiments/search",
    "2.0/mlflow/runs/search",
    "2.0/mlflow/logged-models/search",
    "2.0/mlflow/registered-models/get-latest-versions",
    "2.0mlflow/experiments/search-datasets",  # sic: MLflow's own route
    "3.0/mlflow/datasets/search",
    "3.0/mlflow/traces/search",
    "3.0/mlflow/issues/search",
    "3.0/mlflow/prompt-optimization/jobs/search",
)
READING_POSTS = frozenset(
    {"/graphql"}
    | {f"/{prefix}/{route}" for prefix in ("api", "ajax-api") for route in _READING_POST_ROUTES}
)


class UnreadableUserList(Exception):
    """The read users' list is missing or corrupt: no write is allowed until it is fixed."""


def read_users(path: Path) -> frozenset[str]:
    """The read users; the list must exist (``digits server start`` writes an empty one)."""
    try:
        users = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UnreadableUserList(f"{path}: {type(error).__name__}") from None
    if not isinstance(users, list) or not all(isinstance(user, str) for user in users):
        raise UnreadableUserList(f"{path}: not a list of user names")
    return frozenset(users)


def refusal(method: str, path: str, user: str, list_path: Path) -> str | None:
    """Why this signed-in user's request is refused, or None. Fails closed: without a
    readable list of read users, every write is refused."""
    if method in SAFE_METHODS or path.rstrip("/") in READING_POSTS:
        return None
    try:
        readers = read_users(list_path)
    except UnreadableUserList as error:
        return f"the team server's list of read users is unreadable ({error}): no writes"
    if user in readers:
        return f"{user} may read only (added with --permission read)"
    return None


def authenticate_team_request() -> Any:
    from flask import Response, request
    from mlflow.server.auth import authenticate_request_basic_auth

    authorization = authenticate_request_basic_auth()
    if isinstance(authorization, Response):
        return authorization
    reason = refusal(
        request.method,
        request.path,
        authorization.username or "",
        Path(os.environ[READ_USERS_VARIABLE]),
    )
    if reason is not None:
        return Response(f"{reason}\n", status=403, mimetype="text/plain")
    return authorization
