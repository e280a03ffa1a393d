"""``digits server``: what each action prints."""

from __future__ import annotations

from digit_recognizer.config import Params
from digit_recognizer.errors import UserError
from digit_recognizer.team import server
from digit_recognizer.team.state import Permission
from digit_recognizer.tracking import project_root


def server_action(params: Params, action: str, user: str | None, permission: Permission) -> None:
    """``digits server start|stop|status|add-user``, each reported in a line or two."""
    root = project_root()
    if action == "start":
        info = server.start(params.server, root)
        state = "already running" if info.already_running else "started"
        print(f"server: {state} on {info.tracking_uri} (PostgreSQL store, basic auth)")
        print(f"server: as admin, here or on any machine: source {info.admin_settings}")
    elif action == "stop":
        stopped = server.stop(params.server, root)
        print(f"server: stopped {' and '.join(stopped)}" if stopped else "server: nothing ran")
    elif action == "status":
        print("\n".join(f"server: {line}" for line in server.status(params.server, root)))
    else:
        if not user:
            raise UserError("server add-user needs a user name: digits server add-user NAME")
        settings = server.add_team_user(params.server, params.mlflow, root, user, permission)
        print(
            f"server: added {user} ({permission}); their settings, password "
            f"included, are in {settings}: hand it over privately, then delete it; they run "
            f"source {settings.name}"
        )
