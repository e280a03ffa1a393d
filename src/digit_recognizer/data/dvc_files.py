"""DVC's content hashes, computed the way DVC 3 computes them, to check data/ against data.dvc."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from digit_recognizer.errors import UserError
from digit_recognizer.files import file_digest


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def directory_md5(folder: Path) -> str:
    """DVC 3's directory hash: md5 of the sorted JSON listing of (relpath, md5), plus '.dir'."""
    entries = [
        {"md5": file_md5(path), "relpath": path.relative_to(folder).as_posix()}
        for path in sorted(folder.rglob("*"), key=lambda item: item.relative_to(folder).parts)
        if path.is_file()
    ]
    listing = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(listing).hexdigest() + ".dir"


def tracked_md5(dvc_file: Path) -> str:
    """The md5 that a single-output .dvc file records."""
    try:
        document = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
        return str(document["outs"][0]["md5"])
    except FileNotFoundError:
        raise UserError(f"{dvc_file}: file not found") from None
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        raise UserError(f"{dvc_file}: not a DVC file with one output and an md5") from None
