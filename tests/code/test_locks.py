"""The promotion lock: a file for the local store, never silently a file for a shared one."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from digit_recognizer.config.environment import LOCK_URL_VARIABLE
from digit_recognizer.errors import UserError
from digit_recognizer.locks import advisory_key, redact, registry_lock


def test_a_shared_store_without_the_team_lock_refuses_to_promote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LOCK_URL_VARIABLE, raising=False)
    with (
        pytest.raises(UserError, match=LOCK_URL_VARIABLE),
        registry_lock(tmp_path, "digit-recognizer", "http://team:5050", 60),
    ):
        pass


def test_the_local_store_serialises_on_a_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given one holder of the local lock
    monkeypatch.delenv(LOCK_URL_VARIABLE, raising=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    order: list[str] = []

    def second_holder() -> None:
        with registry_lock(tmp_path, "digit-recognizer", store, 60):
            order.append("second")

    with registry_lock(tmp_path, "digit-recognizer", store, 60):
        # when another thread asks for it, then it waits until the first lets go
        waiting = threading.Thread(target=second_holder)
        waiting.start()
        time.sleep(0.5)
        order.append("first")
    waiting.join(timeout=10)
    assert order == ["first", "second"]


def test_waiting_longer_than_the_timeout_fails_naming_the_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a promotion by ana holding the local lock
    monkeypatch.delenv(LOCK_URL_VARIABLE, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with registry_lock(tmp_path, "digit-recognizer", store, 60):
        # when another waits for it longer than its timeout
        started = time.monotonic()
        with (
            pytest.raises(UserError) as raised,
            registry_lock(tmp_path, "digit-recognizer", store, 0.5),
        ):
            pass
    # then it gives up in time, in one line naming who holds the lock and where
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert f"held by ana@{socket.gethostname()} pid {os.getpid()}" in message, message
    assert "promote.lock_timeout_seconds" in message and "\n" not in message
    # and once released, the lock is free again at once
    with registry_lock(tmp_path, "digit-recognizer", store, 0.5):
        pass


def test_an_unreachable_lock_database_fails_in_one_line_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_URL_VARIABLE, "postgresql://digits_lock:s3cret@127.0.0.1:1/mlflow")
    with (
        pytest.raises(UserError) as raised,
        registry_lock(tmp_path, "digit-recognizer", "http://team:5050", 60),
    ):
        pass
    message = str(raised.value)
    assert "cannot connect" in message and "s3cret" not in message and "\n" not in message


def test_lock_keys_are_stable_and_urls_are_redacted() -> None:
    assert advisory_key("a") == advisory_key("a") != advisory_key("b")
    assert -(2**63) <= advisory_key("digit-recognizer") < 2**63
    assert redact("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"
    assert redact("postgresql://h/d") == "postgresql://h/d"
