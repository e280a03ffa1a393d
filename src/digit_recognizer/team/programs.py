"""Running the server's programs: one line of their output when they fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

from digit_recognizer.errors import UserError


def run_program(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
        raise UserError(f"{what} failed: {lines[-1]}")
    return result.stdout


def last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "(empty log)"
