"""Moving the ``champion`` alias and its history, so that a process killed between two
registry calls leaves a state the next promotion or rollback repairs.

MLflow's registry has no transaction: a move is several calls (the history tag, the
``champion`` and ``previous-champion`` aliases, the versions' tags, the move's record). Each
move is first written whole, as one tag on the registered model (``champion_move``: the history
it leads to, the version tags it sets, its record), then carried out, then cleared. ``repair``,
which every promotion and rollback runs under the promotion lock before anything else, carries
out a move a killed process left written but unfinished; every step is idempotent, so doing one
twice is harmless.

A tag holds at most 5,000 characters on PostgreSQL, so the history tag keeps the last
``ROLLBACK_DEPTH`` champions (how far rollback goes back) and every move is also recorded
whole, as a finished run in the project's experiment (``Registry.recorded_moves``).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from digit_recognizer import tracking

PREVIOUS = "previous-champion"
HISTORY_TAG = "champion_history"
MOVE_TAG = "champion_move"  # the move under way; empty when none is
ROLLED_BACK_TAG = "rolled_back_at"
ROLLBACK_DEPTH = 200  # champions the history tag keeps: ~1,500 characters with 5-digit versions


def champion_history(registry: tracking.Registry) -> list[str]:
    """Every champion so far, oldest first; the last one is the champion."""
    return list(json.loads(registry.model_tag(HISTORY_TAG) or "[]"))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _carry_out(registry: tracking.Registry, move: dict[str, Any], retried: bool) -> None:
    history: list[str] = move["history"]
    registry.set_model_tag(HISTORY_TAG, json.dumps(history))
    registry.set_alias(tracking.CHAMPION, history[-1])
    if len(history) >= 2:
        registry.set_alias(PREVIOUS, history[-2])
    elif registry.alias(PREVIOUS) is not None:
        registry.delete_alias(PREVIOUS)
    for version, tags in move["version_tags"].items():
        registry.tag_version(version, tags)
    if "record" in move:  # journals of earlier versions of this project have none
        registry.record_move(move["id"], move["record"], retried)
    registry.set_model_tag(MOVE_TAG, "")


def _move(
    registry: tracking.Registry,
    history: list[str],
    version_tags: dict[str, dict[str, str]],
    record: dict[str, str],
) -> None:
    move = {
        "history": history[-ROLLBACK_DEPTH:],
        "version_tags": version_tags,
        "id": uuid.uuid4().hex,
        "record": {**record, "at": _now(), tracking.MOVE_MODEL_TAG: registry.name},
    }
    registry.move_guard()  # before the move is written down: after it, any holder finishes it
    registry.set_model_tag(MOVE_TAG, json.dumps(move))
    _carry_out(registry, move, retried=False)


def repair(registry: tracking.Registry) -> str | None:
    """Finish a move a killed process left half done; say what it was, if there was one."""
    pending = registry.model_tag(MOVE_TAG)
    if pending:
        move = json.loads(pending)
        _carry_out(registry, move, retried=True)
        return f"finished an interrupted move of the champion to version {move['history'][-1]}"
    current, history = registry.alias(tracking.CHAMPION), champion_history(registry)
    if current is not None and (not history or history[-1] != current):
        # an alias moved by hand (or by a version of this project that wrote no move first)
        previous = history[-1] if history else ""
        _move(registry, [*history, current], {}, {"move": "adopt", "from": previous, "to": current})
        return f"version {current}, champion but not last in the history, added to it"
    return None


def promote_to(registry: tracking.Registry, version: str, forced: bool, reason: str) -> None:
    """Make ``version`` the champion."""
    history = champion_history(registry)
    if history and history[-1] == version:
        return
    tags = {"promoted_at": _now()}  # forcing is in the decision's ``promotion`` tag
    record = {
        "move": "promote",
        "from": history[-1] if history else "",
        "to": version,
        "forced": str(forced).lower(),
        "reason": reason[:1000],
    }
    _move(registry, [*history, version], {version: tags}, record)


def roll_back(registry: tracking.Registry) -> tuple[str, str] | None:
    """Move the champion back to the one before it; (from, to), or None when there is none."""
    history = champion_history(registry)
    current = history[-1] if history else None
    while history and history[-1] == current:
        history.pop()
    if current is None or not history:
        return None
    tags = {current: {ROLLED_BACK_TAG: _now()}}
    _move(registry, history, tags, {"move": "rollback", "from": current, "to": history[-1]})
    return current, history[-1]
