"""The lock promotions and rollbacks hold while they read and move the champion alias.

MLflow's registry has no compare-and-set, so two promotions must not interleave. Against the
default local store a lock file in the project root serialises them. Against a shared store
(a team server) clients on different machines share nothing on disk: they take a PostgreSQL
advisory lock on the database named by ``DIGITS_REGISTRY_LOCK_URL`` (``digits server start``
prints it), which PostgreSQL releases by itself when a client's connection dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from digit_recognizer.errors import UserError

LOCK_URL_VARIABLE = "DIGITS_REGISTRY_LOCK_URL"
LOCK_FILE = ".registry.lock"
LOCAL_SCHEMES = frozenset({"", "file", "sqlite"})  # stores that live on this machine


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (pg_advisory_lock takes a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def advisory_lock(lock_url: str, name: str) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock for ``name`` (waits for the holder)."""
    import psycopg

    try:
        connection = psycopg.connect(lock_url, connect_timeout=10)
    except psycopg.Error as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise UserError(
            f"{LOCK_URL_VARIABLE}={redact(lock_url)}: cannot connect: {first_line}"
        ) from None
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (advisory_key(name),))
        yield
    finally:
        connection.close()  # ends the session, which releases the lock even if unlock fails


@contextlib.contextmanager
def registry_lock(root: Path, registered_model: str, tracking_uri: str) -> Iterator[None]:
    """Serialise alias moves of ``registered_model`` among every client of the store."""
    lock_url = os.environ.get(LOCK_URL_VARIABLE)
    if lock_url:
        with advisory_lock(lock_url, f"digit-recognizer/registry/{registered_model}"):
            yield
        return
    if urlsplit(tracking_uri).scheme not in LOCAL_SCHEMES:
        raise UserError(
            f"{tracking_uri} is shared, and promotions from other machines would not be "
            f"serialised by a local lock file: set {LOCK_URL_VARIABLE} to the team's lock "
            "database (digits server status prints it)"
        )
    with file_lock(root / LOCK_FILE):
        yield
