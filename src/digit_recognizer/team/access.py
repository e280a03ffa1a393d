"""Runs inside the team's MLflow server, as its auth config's ``authorization_function``:
MLflow's basic auth, then one rule of ours.

MLflow lets any signed-in user create experiments and registered models whatever their grants,
so a user added with ``--permission read`` could still write. Here every write from a read
user (any method but GET, HEAD and OPTIONS, searches aside) is refused with 403. The read
users are listed in a file ``digits server add-user`` keeps; it is read again on each write,
so a new user counts at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

READ_USERS_VARIABLE = "DIGITS_TEAM_READ_USERS"  # the list's path, set by digits server start
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST endpoints that only read: searches (runs, experiments, logged models, traces) and the
# UI's GraphQL queries, which MLflow's auth checks resource by resource.
READING_POSTS = ("/search", "/graphql")


def read_users(path: Path) -> frozenset[str]:
    try:
        return frozenset(json.loads(path.read_text()))
    except FileNotFoundError:
        return frozenset()


def authenticate_team_request() -> Any:
    from flask import Response, request
    from mlflow.server.auth import authenticate_request_basic_auth

    authorization = authenticate_request_basic_auth()
    if isinstance(authorization, Response) or request.method in SAFE_METHODS:
        return authorization
    if request.path.rstrip("/").endswith(READING_POSTS):
        return authorization
    if authorization.username in read_users(Path(os.environ[READ_USERS_VARIABLE])):
        return Response(
            f"{authorization.username} may read only (added with --permission read)\n",
            status=403,
            mimetype="text/plain",
        )
    return authorization
