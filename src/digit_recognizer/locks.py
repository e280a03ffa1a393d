"""The lock promotions and rollbacks hold while they read and move the champion alias.

MLflow's registry has no compare-and-set, so two promotions must not interleave. Against the
default local store a lock file in the project root serialises them. Against a shared store
(a team server) clients on different machines share nothing on disk: they take a PostgreSQL
advisory lock on the database named by ``DIGITS_REGISTRY_LOCK_URL`` (in the settings file
``digits server add-user`` writes), which PostgreSQL releases by itself when a client's
connection dies. Either lock is waited for at most ``promote.lock_timeout_seconds``; then the
waiter fails in one line naming the holder (user, machine, process). Right before the champion
moves, the holder confirms its lock is still held (``HeldLock.confirm``): a PostgreSQL session
can be ended under it, and a mover that lost its lock refuses rather than race another.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from digit_recognizer.config.environment import LOCK_URL_VARIABLE, environment
from digit_recognizer.errors import UserError

LOCK_FILE = ".registry.lock"
APPLICATION_PREFIX = "digits "  # how the lock's sessions name themselves to PostgreSQL
LOCAL_SCHEMES = frozenset({"", "file", "sqlite"})  # stores that live on this machine


@dataclass(frozen=True)
class HeldLock:
    """A lock being held; ``confirm`` raises UserError, in one line, if it no longer is."""

    confirm: Callable[[], None]


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (pg_advisory_lock takes a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def holder_name() -> str:
    """Who takes a lock, as another waiting for it is told: user, machine and process."""
    user = environment().tracking_username or getpass.getuser()
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _timed_out(what: str, holder: str, timeout: float) -> UserError:
    return UserError(
        f"{what}: held by {holder}; waited {timeout:g} s (promote.lock_timeout_seconds) for "
        "its promotion or rollback to end"
    )


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    raise _timed_out(str(path), handle.read().strip() or "?", timeout) from None
                time.sleep(0.2)
        try:
            handle.truncate(0)
            handle.write(f"{holder_name()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(connection: Any, key: int) -> str:
    """The application name, address and start of the session holding advisory lock ``key``
    (sessions of the same role see each other's)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF  # pg_locks splits the bigint into two oids
    row = connection.execute(
        "SELECT a.application_name, host(a.client_addr), a.backend_start "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s",
        (unsigned >> 32, unsigned & 0xFFFF_FFFF),
    ).fetchone()
    if row is None:
        return "a session that has just ended"
    # another user's lock role sees the name only: the address and start are its own to see
    name, address, since = row
    name = str(name or "an unnamed client").removeprefix(APPLICATION_PREFIX)
    where = f" from {address}" if address else ""
    return f"{name}{where}{f' since {since:%H:%M:%S %Z}' if since else ''}"


def _hold_advisory_lock(lock_url: str, name: str, timeout: float, holder: str) -> int:
    """In the lock's own process: take the lock, say ``locked`` (or the error, in one line),
    hold it until standard input closes, then end the session, which releases it."""
    import psycopg

    try:
        connection = psycopg.connect(
            lock_url,
            connect_timeout=10,
            autocommit=True,
            application_name=f"{APPLICATION_PREFIX}{holder}"[:63],
        )
    except psycopg.Error as error:
        print(
            f"{LOCK_URL_VARIABLE}={redact(lock_url)}: cannot connect: {_first_line(error)}",
            flush=True,
        )
        return 1
    with connection:
        key = advisory_key(name)
        connection.execute(f"SET lock_timeout = {int(timeout * 1000)}")
        try:
            connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            parts = urlsplit(lock_url)
            where = f"{parts.username}@{parts.hostname}:{parts.port}{parts.path}"
            timed_out = _timed_out(
                f"the promotion lock ({where})", _holder(connection, key), timeout
            )
            print(timed_out, flush=True)
            return 1
        print("locked", flush=True)
        for _ in sys.stdin:  # "check" lines, until the client closes it or dies
            try:
                held = connection.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid()"
                ).fetchone()
            except psycopg.Error as error:
                print(f"lost: {_first_line(error)}", flush=True)
                return 1
            print("held" if held and held[0] else "lost: the lock is no longer held", flush=True)
    return 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def advisory_lock(lock_url: str, name: str, timeout: float) -> Iterator[HeldLock]:
    """Hold PostgreSQL's session advisory lock for ``name``, waiting at most ``timeout`` s.

    A small process of its own holds the session: TensorFlow exports its BoringSSL's symbols
    process-wide, and libpq's OpenSSL calls bound to them once TensorFlow is loaded crash
    (``free(): invalid pointer``). The lock's process never loads TensorFlow; if this one
    dies, its pipe closes, the lock's process ends, and PostgreSQL releases the lock.
    """
    session = subprocess.Popen(
        [sys.executable, "-m", __name__, name, str(timeout), holder_name()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, LOCK_URL_VARIABLE: lock_url},  # not an argument: ps would show it
    )
    assert session.stdin is not None and session.stdout is not None
    answer = session.stdout.readline().strip()
    if answer != "locked":
        session.stdin.close()
        session.wait()
        raise UserError(answer or f"the promotion lock's process ended with {session.returncode}")

    def confirm() -> None:
        assert session.stdin is not None and session.stdout is not None
        try:
            session.stdin.write("check\n")
            session.stdin.flush()
            answer = session.stdout.readline().strip()
        except OSError:
            answer = ""
        if answer != "held":
            reason = answer.removeprefix("lost: ") or "its process ended"
            raise UserError(
                f"the promotion lock was lost before the champion moved ({reason}); nothing "
                "was moved by this command: run it again"
            )

    try:
        yield HeldLock(confirm)
    finally:
        with contextlib.suppress(OSError):  # a lost session's process may have ended
            session.stdin.close()
        session.wait(timeout=60)


@contextlib.contextmanager
def registry_lock(
    root: Path, registered_model: str, tracking_uri: str, timeout: float
) -> Iterator[HeldLock]:
    """Serialise alias moves of ``registered_model`` among every client of the store."""
    lock_url = environment().registry_lock_url
    if lock_url:
        name = f"digit-recognizer/registry/{registered_model}"
        with advisory_lock(lock_url, name, timeout) as held:
            yield held
        return
    if urlsplit(tracking_uri).scheme not in LOCAL_SCHEMES:
        raise UserError(
            f"{tracking_uri} is shared, and promotions from other machines would not be "
            f"serialised by a local lock file: set {LOCK_URL_VARIABLE} to the team's lock "
            "database (the settings file digits server add-user writes holds it)"
        )
    with file_lock(root / LOCK_FILE, timeout):
        yield HeldLock(lambda: None)  # a lock file is held while this process lives


if __name__ == "__main__":
    lock_name, wait_seconds, holder = sys.argv[1:4]
    sys.exit(
        _hold_advisory_lock(environment().registry_lock_url, lock_name, float(wait_seconds), holder)
    )
