"""Letting the team server's account run this project, as an admin does once on a machine
whose Python sits in a private folder (here pyenv under /root, which is 0700)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from digit_recognizer.team.account import server_account
from tests.helpers.project import REPOSITORY


@contextlib.contextmanager
def server_account_let_through(name: str = "digits") -> Iterator[None]:
    """Give ``name`` (made if missing) search permission (setfacl u:NAME:x) on the folders
    closed to others on the paths of the interpreter and the project; take it back after."""
    if os.geteuid() != 0:  # the server then runs as whoever starts it
        yield
        return
    server_account(name)
    targets = {Path(path).resolve() for path in (sys.executable, sys.prefix, sys.base_prefix)}
    targets.add(REPOSITORY.resolve())
    closed = sorted(
        {
            folder
            for target in targets
            for folder in (target, *target.parents)
            if folder.is_dir() and not folder.stat().st_mode & 0o001
        }
    )
    had_acl = {
        folder: bool(
            subprocess.run(
                ["getfacl", "--skip-base", "--absolute-names", str(folder)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        for folder in closed
    }
    for folder in closed:
        subprocess.run(["setfacl", "-m", f"u:{name}:x", str(folder)], check=True)
    try:
        yield
    finally:  # as it was: without the entry, and without an ACL at all if it had none
        for folder in closed:
            undo = ["-x", f"u:{name}"] if had_acl[folder] else ["-b"]
            subprocess.run(["setfacl", *undo, str(folder)], check=False)
