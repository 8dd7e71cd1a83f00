"""Exactly-once operator commands: the control API remembers the ids of recent commands.

A client may send ``"id"`` with a command (``control_client.post_command`` always does: a
uuid4 hex, the same on every retry). The first request with an id runs the command; a
request that repeats the id gets the first request's answer back, marked ``"repeat": true``,
and the command is not run again: a client that lost an answer (a reset, a timeout) can retry
without flattening twice. A repeat that arrives while the first is still waiting for the
kernel waits for the same answer. The answer remembered is the whole HTTP answer (status and
body): a refusal (409) is repeated as a refusal, a failure (500) as a failure. Only a command
the session never started (504: it was cancelled at the timeout, see ``SessionControl``) is
forgotten, so a retry with the same id runs it then.

The ledger lives in the control server (one per app), never in the kernel: a repeat is not a
session input and leaves no audit row. It holds the last ``REMEMBERED_IDS`` ids (oldest
forgotten first; commands still running are never forgotten). An id is 1 to 64 characters of
``A-Z a-z 0-9 _ . : -``; reusing one for a different command is refused (422).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from ultrathink.web.api_error import ApiError

__all__ = [
    "ID_PATTERN",
    "REMEMBERED_IDS",
    "Answer",
    "CommandLedger",
    "pop_command_id",
    "wait_answer",
]

#: How many command ids (with their answers) the control server remembers.
REMEMBERED_IDS = 1_000
#: What a command id may be: 1-64 characters, letters, digits and ``_ . : -``.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of ``POST /v1/commands``: status and JSON body."""

    status: int
    body: dict[str, Any]


def pop_command_id(payload: Any) -> str | None:
    """Take ``"id"`` out of a command object (the command itself has no such field); None
    when absent (an older client), ``ApiError(422)`` when it is not a valid id."""
    if not isinstance(payload, dict) or "id" not in payload:
        return None
    value = payload.pop("id")
    if value is None:
        return None
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        shown = repr(value) if isinstance(value, str) else f"a JSON {type(value).__name__}"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ApiError(
            422,
            f"id must be 1-64 characters of letters, digits, '_', '.', ':' or '-' (e.g. a "
            f"uuid4 hex), was {shown}; send a new id per command, or none",
        )
    return value


@dataclass
class _Entry:
    fingerprint: str
    future: Future[Answer]


class CommandLedger:
    """The ids of recent commands and their answers (thread-safe; see the module docstring)."""

    def __init__(self, size: int = REMEMBERED_IDS) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, was {size}")
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def claim(self, command_id: str, command: dict[str, Any]) -> tuple[Future[Answer], bool]:
        """The future answer of ``command_id`` and whether this caller must produce it (the
        first request) or only wait for it (a repeat). ``ApiError(422)`` when the id was
        used for a different command."""
        fingerprint = json.dumps(command, sort_keys=True, default=str)
        with self._lock:
            entry = self._entries.get(command_id)
            if entry is not None:
                if entry.fingerprint != fingerprint:
                    raise ApiError(
                        422,
                        f"id {command_id!r} was already used for another command; "
                        "send a new id per command",
                    )
                self._entries.move_to_end(command_id)
                return entry.future, False
            future: Future[Answer] = Future()
            self._entries[command_id] = _Entry(fingerprint, future)
            self._evict()
            return future, True

    def settle(self, command_id: str, answer: Answer, *, forget: bool = False) -> None:
        """Give the answer to everyone waiting on ``command_id``; ``forget``: the command never
        ran, so the next request with this id runs it."""
        with self._lock:
            entry = self._entries.get(command_id)
            if forget and entry is not None:
                del self._entries[command_id]
        if entry is not None and not entry.future.done():
            entry.future.set_result(answer)

    def _evict(self) -> None:
        # oldest first; a command still running is kept (its repeats must find it)
        excess = len(self._entries) - self._size
        for key in list(self._entries):
            if excess <= 0:
                break
            if self._entries[key].future.done():
                del self._entries[key]
                excess -= 1


def wait_answer(future: Future[Answer], timeout_s: float, action: str) -> Answer:
    """The first request's answer, for a repeat (blocking: call it off the event loop)."""
    try:
        answer = future.result(timeout_s)
    except FutureTimeout:
        return Answer(504, {"error": (
            f"the first request with this id ({action}) is still waiting for the session after "
            f"{timeout_s:g} s; retry with the same id later, or check `ultrathink ctl status`"
        )})  # fmt: skip
    return Answer(answer.status, {**answer.body, "repeat": True})
