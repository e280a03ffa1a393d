"""Our directory hash must equal DVC's own, or the fetch no-op check would lie."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from digit_recognizer.data.dvc_files import directory_md5, tracked_md5
from tests.helpers.project import write_tiny_data


def test_directory_md5_equals_dvc_add(tmp_path: Path) -> None:
    # given a git + dvc repository with a data folder
    write_tiny_data(tmp_path / "data")
    (tmp_path / "data" / "nested").mkdir()
    (tmp_path / "data" / "nested" / "note.txt").write_text("x\n")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*dvc, "init", "-q"], cwd=tmp_path, check=True)
    # when DVC itself tracks it
    subprocess.run([*dvc, "add", "-q", "data"], cwd=tmp_path, check=True)
    # then both hashes agree
    assert directory_md5(tmp_path / "data") == tracked_md5(tmp_path / "data.dvc")
