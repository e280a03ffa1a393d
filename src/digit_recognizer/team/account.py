"""The account ``mlflow server`` runs as. Started by root, it runs as ``server.run_as`` (a
system account, made when missing) and not as root: an exploit through MLflow then holds no
more than the files that account owns. The files the server reads or writes are handed to it
(owner-only still); everything else in the state folder stays root's.

The account must be able to run this project's Python and read its code; when a private folder
on their path stops it (a Python under /root, say), ``start`` refuses in one line and says how
to let it through, rather than run the server as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from digit_recognizer.errors import UserError
from digit_recognizer.team.programs import run_program

# What the server's processes import and open, checked as the account before it starts.
_CAN_RUN = """
import sys
import mlflow.server, digit_recognizer.team.access
for path in sys.argv[1:]:
    open(path, "rb").close()
"""


@dataclass(frozen=True)
class ServerAccount:
    name: str
    uid: int
    gid: int


def server_account(name: str) -> ServerAccount | None:
    """The account to run the server as; None when we are not root (the server then runs as
    whoever starts it). A missing account is made: a system account with no login and no home."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        run_program(
            [
                *("useradd", "--system", "--user-group", "--no-create-home"),
                *("--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name),
            ],
            f"useradd {name}",
        )
        entry = pwd.getpwnam(name)
    return ServerAccount(name, entry.pw_uid, entry.pw_gid)


def check_can_run(account: ServerAccount, environment: dict[str, str], files: list[Path]) -> None:
    """The account runs this Python, imports the server's code and reads ``files``; or a
    one-line error saying what stops it."""
    try:
        checked = subprocess.run(
            [sys.executable, "-c", _CAN_RUN, *map(str, files)],
            user=account.uid,
            group=account.gid,
            extra_groups=[],
            cwd="/",
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = checked.stderr.strip().splitlines() if checked.returncode else []
        failure = (lines[-1] if lines else "no output") if checked.returncode else None
    except OSError as error:  # the interpreter itself is out of its reach: exec fails
        failure = error.strerror or str(error)
    if failure is not None:
        raise UserError(
            f"mlflow server is to run as {account.name}, not root, and {account.name} cannot "
            f"run {sys.executable} or read the project ({failure}): "
            f"let it through the private folders on their paths (e.g. setfacl -m "
            f"u:{account.name}:x /root), or start the server as an unprivileged user"
        )


def hand_over(account: ServerAccount | None, *paths: Path) -> None:
    """Make ``paths`` (folders with all they hold) the account's, for the server to use."""
    if account is None:
        return
    for path in paths:
        if not path.exists():
            continue
        shutil.chown(path, account.uid, account.gid)
        if path.is_dir():
            for folder, folders, names in os.walk(path):
                for name in [*folders, *names]:
                    os.chown(Path(folder) / name, account.uid, account.gid, follow_symlinks=False)
