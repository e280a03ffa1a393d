"""The programs of the environment digits runs in (dvc, mlflow, and digits for DVC's stages),
found beside this interpreter before PATH: `.venv/bin/digits`, cron (whose PATH is short) and
an activated shell then all run the same ones."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from digit_recognizer.errors import UserError


def search_path() -> str:
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"


def program_environment(**extra: str) -> dict[str, str]:
    """This process's environment with this environment's programs first on PATH."""
    return {**os.environ, "PATH": search_path(), **extra}


def program(name: str) -> str:
    """The path of ``name`` in this environment (else on PATH); one line when there is none."""
    found = shutil.which(name, path=search_path())
    if found is None:
        raise UserError(f"{name} is not installed beside digits; run `make venv` first")
    return found
