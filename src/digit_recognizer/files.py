"""Atomic file writes: every output appears whole or not at all (temp file, fsync, rename,
fsync of the folder)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(
        # Keep the real suffix last: some writers (Keras) insist on it.
        prefix=f".{target.name}.",
        suffix=f".tmp{target.suffix}",
        dir=target.parent,
    )
    os.close(descriptor)
    temporary = Path(temporary_name)
    os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs are shared
    try:
        yield temporary
        if temporary.is_file():  # a writer may have made a folder (a saved model)
            sync(temporary)
        os.replace(temporary, target)
        sync(target.parent)  # the rename itself survives a power cut
    finally:
        temporary.unlink(missing_ok=True)


def sync(path: Path) -> None:
    """fsync a file's bytes, or a folder's entries (a rename in it)."""
    descriptor = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes, read in blocks (the CSVs are ~100 MB)."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(target: Path, content: bytes) -> None:
    with atomic_path(target) as temporary:
        temporary.write_bytes(content)


def write_text(target: Path, content: str) -> None:
    write_bytes(target, content.encode("utf-8"))


def write_json(target: Path, content: Any) -> None:
    write_text(target, json.dumps(content, indent=2, sort_keys=True) + "\n")


def write_private_text(target: Path, content: str) -> None:
    """Like ``write_text``, readable by the owner only from the first byte (secrets)."""
    with atomic_path(target) as temporary:
        os.chmod(temporary, 0o600)
        temporary.write_text(content, encoding="utf-8")


def replace_block(page: Path, begin: str, end: str, block: str) -> None:
    """Rewrite the generated block between ``begin`` and ``end`` (markers included in ``block``)."""
    text = page.read_text(encoding="utf-8")
    start, stop = text.index(begin), text.index(end) + len(end)
    write_text(page, text[:start] + block + text[stop:])
